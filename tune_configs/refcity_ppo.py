"""PPO on the reference city (20 stations, 50 services), synthetic days 0-11. 30 minutes on 2 cores."""

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
        "fcnet_hiddens": [256, 256],
    },
    stop_criteria={"time_total_s": 1800},
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
