"""One Tune experiment preset: an env, an algorithm, fixed hyperparameters, a search space and stop criteria."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tune_configs import PresetError

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

#: metrics a stop criterion may name (Tune stops a trial as soon as any one is reached)
STOP_KEYS = ("training_iteration", "time_total_s", "num_env_steps_sampled_lifetime", "env_runners/episode_return_mean")

TESTAPP = "lwmecps/TestApp4BS-v0"
REFCITY = "lwmecps/ReferenceCity-v0"
LARGECITY = "lwmecps/LargeCity-v0"
#: training traces: the upstream twin trains on profile A (B is held out); the cities on synthetic days 0-11
#: (days 12-15 stay unseen for evaluation)
TESTAPP_TRAIN: dict[str, Any] = {"traces": ["A"]}
CITY_TRAIN: dict[str, Any] = {"traces": list(range(12))}


def check_stop(stop: Mapping[str, Any]) -> dict[str, float]:
    """Validated stop criteria: known metric names, positive numbers."""
    out: dict[str, float] = {}
    for key, value in stop.items():
        if key not in STOP_KEYS:
            raise PresetError(f"stop.{key}: unknown stop criterion (known: {', '.join(STOP_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PresetError(f"stop.{key}: expected a number, got {type(value).__name__} {value!r}")
        if key != "env_runners/episode_return_mean" and value <= 0:
            raise PresetError(f"stop.{key}: must be > 0, got {value!r}")
        out[key] = value
    return out


@dataclass(frozen=True)
class Preset:
    """A named experiment. ``hparams`` use the flat names of :func:`policies.rllib.configs.algorithm_config`;
    ``search`` builds the Tune search space over the same names (a function, so Tune domains are made fresh)."""

    name: str
    env_id: str
    algo: str
    stop_criteria: Mapping[str, float]
    env_config: Mapping[str, Any] = field(default_factory=dict)
    hparams: Mapping[str, Any] = field(default_factory=dict)
    search: Callable[[], dict[str, Any]] | None = None
    checkpoint_every: int = 10
    description: str = ""

    def config(
        self, overrides: Mapping[str, Any] | None = None, *, seed: int = 0, num_env_runners: int = 0
    ) -> AlgorithmConfig:
        """The RLlib config: preset hyperparameters, then the search space, then ``overrides`` (validated)."""
        from policies.rllib.configs import algorithm_config

        hparams = {**self.hparams, **self.param_space(), **(overrides or {})}
        try:
            return algorithm_config(
                self.algo, self.env_id, dict(self.env_config), hparams, num_env_runners=num_env_runners, seed=seed
            )
        except ValueError as e:
            raise PresetError(f"{self.name}: {e}") from None

    def param_space(self) -> dict[str, Any]:
        """The Tune search space (hyperparameter name -> Tune domain or ``grid_search``); may be empty."""
        return self.search() if self.search else {}

    def stop(self) -> dict[str, float]:
        return check_stop(self.stop_criteria)

    def main(self) -> None:
        """``python -m tune_configs.<module>``: the shared command line for this preset."""
        from tune_configs.cli import main

        raise SystemExit(main(argv=None, preset=self.name))
