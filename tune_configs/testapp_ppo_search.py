"""PPO on the upstream twin: a 3 x 2 grid over learning rate and entropy bonus around ``testapp-ppo``, 5 minutes
per trial (the other hyperparameters, the slot-shared module included, are ``testapp-ppo``'s)."""

from ray import tune

from tune_configs.preset import TESTAPP, TESTAPP_TRAIN, Preset
from tune_configs.testapp_ppo import PRESET as BASE

PRESET = Preset(
    name="testapp-ppo-search",
    env_id=TESTAPP,
    algo="PPO",
    env_config=TESTAPP_TRAIN,
    hparams={k: v for k, v in BASE.hparams.items() if k not in ("lr", "entropy_coeff")},
    search=lambda: {"lr": tune.grid_search([1e-4, 3e-4, 1e-3]), "entropy_coeff": tune.grid_search([0.0, 0.01])},
    stop_criteria={"time_total_s": 300},
)
config, param_space, stop = PRESET.config, PRESET.param_space, PRESET.stop

if __name__ == "__main__":
    PRESET.main()
