"""PPO on the reference city (20 stations, 50 services), synthetic days 0-11. 30 minutes on 2 cores.

The slot-shared module (one network for all 250 service-node slots, with each slot's catchment as features) is
what makes this trainable: RLlib's default network has 250 heads, each learning from its own slot alone, and
samples them in a Python loop (see ``bench/ppo_throughput.py``).
"""

from tune_configs.preset import CITY_TRAIN, REFCITY, Preset

PRESET = Preset(
    name="refcity-ppo",
    env_id=REFCITY,
    algo="PPO",
    env_config=CITY_TRAIN,
    hparams={
        "gamma": 0.7,
        "lambda_": 0.9,
        "lr": 3e-4,
        "train_batch_size": 4000,
        "minibatch_size": 500,
        "num_epochs": 6,
        "fcnet_hiddens": [64, 64],
        "module": "slot-shared",
    },
    stop_criteria={"time_total_s": 1800},
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
