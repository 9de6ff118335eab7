"""DQN on the upstream twin's flat joint action (5^4 = 625 actions), trained on profile A. 15 minutes."""

from tune_configs.preset import TESTAPP, TESTAPP_TRAIN, Preset

PRESET = Preset(
    name="testapp-dqn", env_id=TESTAPP, algo="DQN", env_config=TESTAPP_TRAIN, stop_criteria={"time_total_s": 900}
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
