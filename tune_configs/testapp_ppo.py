"""PPO on the upstream twin (``testapp-4bs``), trained on profile A; B is held out. 15 minutes on 2 cores.

The problem is nearly per-slot (no change cost; only throttling load carries over between slots). Measured in
``bench/learning_testapp.py``: with ``gamma`` 0.5 the greedy policy learns when a station needs a second replica;
with ``gamma`` 0.9 (same budget) the sampled policy scores well in training because its random second replicas
drain the throttling load, but its greedy mode is one replica everywhere (= static-1). The slot-shared module (one
small network decides for every station) is what makes a policy trained on A work on B: with RLlib's default
network each station has its own head, and B's busy stations (bs2, bs3) are quiet in A, so their heads never
learn to add a replica. ``entropy_coeff`` 0.01 keeps the policy trying a second replica between 30 and 40 users
(without it some seeds settle on adding it only above ~40, which A rarely shows and B often needs).
"""

from tune_configs.preset import TESTAPP, TESTAPP_TRAIN, Preset

PRESET = Preset(
    name="testapp-ppo",
    env_id=TESTAPP,
    algo="PPO",
    env_config=TESTAPP_TRAIN,
    hparams={
        "gamma": 0.5,
        "lambda_": 0.9,
        "lr": 5e-4,
        "train_batch_size": 4000,
        "minibatch_size": 500,
        "num_epochs": 10,
        "entropy_coeff": 0.01,
        "fcnet_hiddens": [64, 64],
        "module": "slot-shared",
    },
    stop_criteria={"time_total_s": 900},
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
