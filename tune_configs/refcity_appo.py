"""APPO on the reference city, synthetic days 0-11. 30 minutes on 2 cores (more with env runners)."""

from tune_configs.preset import CITY_TRAIN, REFCITY, Preset

PRESET = Preset(
    name="refcity-appo", env_id=REFCITY, algo="APPO", env_config=CITY_TRAIN, stop_criteria={"time_total_s": 1800}
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
