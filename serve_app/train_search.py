"""A training task with a Tune search (a ``search_space``, ``num_samples > 1`` or a searching preset): one Ray Tune
experiment inside the training job.

The trainable is the task's RLlib algorithm class and the param space its config with the search domains in it
(plus a seed grid ``seed, seed+1, ...`` when ``num_samples > 1``), as :func:`tune_configs.run.run` builds it: trials
= grid points x ``num_samples``. The experiment lives under ``<storage_root>/runs/task-<task id>``. Every trial
iteration reports into the task: ``progress`` = the mean over all trials of each trial's fraction of the stop budget
(1 once a trial ended), ``iteration`` = iterations summed over trials, and a metrics point carrying the trial's
index. A cancel request (or SIGTERM from ``stop_job``) stops every trial. The best trial (highest episode return,
else the longest run: :func:`tune_configs.run.summarize`) gives the model; every trial's final metrics are recorded
in the task as ``trials``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray import tune

if TYPE_CHECKING:
    from serve_app.job_store import JobStore
    from serve_app.job_wandb import JobWandb
    from serve_app.train_job import Run

#: names a trial row's metrics carry in the task (Tune's nested return metric renamed)
TRIAL_METRICS = {
    "training_iteration": "training_iteration",
    "time_total_s": "time_total_s",
    "num_env_steps_sampled_lifetime": "num_env_steps_sampled_lifetime",
    "env_runners/episode_return_mean": "episode_return_mean",
}


def trial_count(space: Mapping[str, Any], num_samples: int) -> int:
    """How many trials a param space runs: the product of its grid sizes (nested too) times ``num_samples``."""

    def grids(node: Any) -> int:
        if isinstance(node, Mapping):
            if set(node) == {"grid_search"}:
                return len(node["grid_search"])
            return math.prod(grids(v) for v in node.values())
        return 1

    return grids(space) * num_samples


def param_space(run: Run) -> dict[str, Any]:
    space = run.config.to_dict()
    if run.num_samples > 1:
        space["seed"] = tune.grid_search([run.seed + i for i in range(run.num_samples)])
    return space


@dataclass
class SearchState:
    """What the driver-side callback and stopper share while the experiment runs."""

    task_id: str
    store: JobStore
    run: Run
    n_trials: int
    wandb: JobWandb | None = None
    started: float = field(default_factory=time.monotonic)
    fractions: dict[str, float] = field(default_factory=dict)
    iterations: dict[str, int] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)
    halt: str | None = None  # why every trial must stop (cancel requested / SIGTERM)

    def overall(self) -> float:
        return min(sum(self.fractions.values()) / max(self.n_trials, 1), 1.0)


class _DriverOnly:
    """Tune pickles the run config into its experiment state; the live state (database client) stays out."""

    state: SearchState | None

    def __getstate__(self) -> dict[str, Any]:
        return {"state": None}


class TaskReporter(_DriverOnly, tune.Callback):
    """Writes each trial iteration into the task (progress over all trials, metrics point) and to W&B."""

    def __init__(self, state: SearchState):
        self.state = state

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from serve_app.train_job import metrics_row, progress, stop_reached

        s = self.state
        if s is None:
            return
        tid = str(trial.trial_id)
        index = s.index.setdefault(tid, len(s.index))
        s.fractions[tid] = 1.0 if stop_reached(result, s.run.stop) else progress(result, s.run.stop)
        s.iterations[tid] = int(result.get("training_iteration") or 0)
        total = sum(s.iterations.values())
        row = metrics_row(result, s.started)
        if s.store.report(s.task_id, s.overall(), {**row, "training_iteration": total, "trial": index,
                                                     "trial_iteration": row["training_iteration"]}):  # fmt: skip
            s.halt = "cancel requested"
        if s.wandb is not None:
            s.wandb.log({f"trial_{index}/{k}": v for k, v in row.items()} | {"progress": s.overall()}, step=total)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.state is not None and self.state.halt is None:
            self.state.fractions[str(trial.trial_id)] = 1.0


class TaskStopper(_DriverOnly, tune.Stopper):
    """Tune's stop rule for each trial (any criterion reached); every trial once the task must halt."""

    def __init__(self, state: SearchState):
        self.state = state

    def __call__(self, trial_id: str, result: dict) -> bool:
        from serve_app.train_job import stop_reached

        return self.state is not None and stop_reached(result, self.state.run.stop)

    def stop_all(self) -> bool:
        return self.state is not None and self.state.halt is not None


def run_search(state: SearchState, storage_root: str) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Run the experiment; returns (the best trial's Checkpoint, its metrics row, every trial's row)."""
    from tune_configs.run import summarize

    run = state.run
    algo_class = run.config.algo_class
    run_config = tune.RunConfig(
        name=f"task-{state.task_id}",
        storage_path=f"{storage_root.rstrip('/')}/runs" if "://" in storage_root else _abs(storage_root) + "/runs",
        stop=TaskStopper(state),
        callbacks=[TaskReporter(state)],
        verbose=0,
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True, num_to_keep=1),
    )
    from serve_app.job_store import Cancelled

    try:
        results = tune.Tuner(algo_class, param_space=param_space(run), run_config=run_config).fit()
    except Exception:
        if state.halt is None:
            raise
        # stopping tore something down (e.g. SIGTERM to the job's whole process group): still a stop
        raise Cancelled(state.halt) from None
    if state.halt is not None:
        raise Cancelled(state.halt)
    summary = summarize(results, [*run.searched, *(["seed"] if run.num_samples > 1 else [])])
    rows = [_trial_row(t) for t in summary["trials"]]
    best = summary["best"]
    if best is None or best["checkpoint"] is None:
        errors = [t["error"] for t in summary["trials"] if t["error"]]
        raise RuntimeError(f"no trial of the search finished with a checkpoint ({(errors or ['no trials'])[0]})")
    result = results[summary["trials"].index(best)]
    return result.checkpoint, _trial_row(best), rows


def _abs(path: str) -> str:
    from pathlib import Path

    return str(Path(path.removeprefix("file://")).expanduser().resolve())


def _trial_row(trial: Mapping[str, Any]) -> dict[str, Any]:
    metrics = trial.get("metrics") or {}
    return {
        "trial_id": trial.get("trial_id"),
        "config": trial.get("config") or {},
        "metrics": {name: metrics.get(key) for key, name in TRIAL_METRICS.items()},
        "error": trial.get("error"),
    }
