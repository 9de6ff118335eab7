"""PPO on the large city (100 stations, 300 services): meant for a Ray cluster (--env-runners). 1 hour."""

from tune_configs.preset import CITY_TRAIN, LARGECITY, Preset

PRESET = Preset(
    name="largecity-ppo", env_id=LARGECITY, algo="PPO", env_config=CITY_TRAIN, stop_criteria={"time_total_s": 3600}
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
