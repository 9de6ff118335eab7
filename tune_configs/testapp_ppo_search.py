"""PPO on the upstream twin: a 3 x 2 grid over learning rate and entropy bonus, 5 minutes per trial."""

from ray import tune

from tune_configs.preset import TESTAPP, TESTAPP_TRAIN, Preset

PRESET = Preset(
    name="testapp-ppo-search",
    env_id=TESTAPP,
    algo="PPO",
    env_config=TESTAPP_TRAIN,
    search=lambda: {"lr": tune.grid_search([1e-4, 3e-4, 1e-3]), "entropy_coeff": tune.grid_search([0.0, 0.01])},
    stop_criteria={"time_total_s": 300},
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
