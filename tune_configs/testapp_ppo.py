"""PPO on the upstream twin (``testapp-4bs``), trained on profile A; B is held out. 15 minutes on 2 cores.

The problem is nearly per-slot (no change cost; only the throttling counters carry over between slots), so a
short horizon (``gamma`` 0.5) and a small network learn fastest; see ``bench/learning_testapp.py``.
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
        "num_epochs": 6,
        "fcnet_hiddens": [64, 64],
    },
    stop_criteria={"time_total_s": 900},
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
