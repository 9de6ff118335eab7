"""APPO on the upstream twin, trained on profile A. 15 minutes on 2 cores."""

from tune_configs.preset import TESTAPP, TESTAPP_TRAIN, Preset

PRESET = Preset(
    name="testapp-appo", env_id=TESTAPP, algo="APPO", env_config=TESTAPP_TRAIN, stop_criteria={"time_total_s": 900}
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
