"""PPO on the upstream twin (``testapp-4bs``), trained on profile A; B is held out. 15 minutes on 2 cores."""

from tune_configs.preset import TESTAPP, TESTAPP_TRAIN, Preset

PRESET = Preset(
    name="testapp-ppo", env_id=TESTAPP, algo="PPO", env_config=TESTAPP_TRAIN, stop_criteria={"time_total_s": 900}
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
