"""A concise progress display: one line per training iteration and one per finished or failed trial."""

from __future__ import annotations

import sys
from typing import Any

from ray.tune import Callback


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class ProgressLine(Callback):
    """``<trial> iter N  steps S  return R  elapsed Ts`` on stdout (Tune's own reporter is turned off)."""

    def _print(self, line: str) -> None:
        print(line, file=sys.stdout, flush=True)  # looked up per line: the callback is pickled with the run

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        runners = result.get("env_runners") or {}
        self._print(
            f"{trial.trial_id} iter {result.get('training_iteration')}"
            f"  steps {_fmt(result.get('num_env_steps_sampled_lifetime'), '.0f')}"
            f"  return {_fmt(runners.get('episode_return_mean'), '.2f')}"
            f"  elapsed {_fmt(result.get('time_total_s'), '.1f')}s"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{trial.trial_id} done")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{trial.trial_id} ERROR (see {trial.local_path}/error.txt)")
