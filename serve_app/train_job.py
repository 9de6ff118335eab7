"""``python -m serve_app.train_job --task-id X``: the Ray job that trains one task.

Reads the task from MongoDB, builds the RLlib config (a ``tune_configs`` preset with the task's hyperparameters
over it, or ``algorithm`` + ``env_id`` + ``env_config`` through :func:`policies.rllib.configs.algorithm_config`),
then runs the algorithm loop itself so that every iteration writes the task's progress and latest metrics and a
metrics row, and checks the task's ``cancel_requested`` flag. A task with a Tune search (search space, several
samples, a searching preset) runs one Tune experiment instead (:mod:`serve_app.train_search`) and keeps its best
trial. Metrics also go to the task's W&B run (:mod:`serve_app.job_wandb`, offline by default; recorded in the task
as ``wandb_run``). When a stop criterion is reached it saves the checkpoint and the framework-neutral export under
``<storage_root>/models/<model_id>/``, registers the model and marks the task completed.
Any error marks the task failed with one clean line; SIGTERM (``stop_job``) or the cancel flag marks it cancelled
(a SIGTERM without a cancel request, e.g. the Ray node going down: failed).
Exit status: 0 completed or cancelled, 1 failed, 2 unknown task.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_app import job_store
from serve_app.job_store import Cancelled
from serve_app.job_wandb import JobWandb

RETURN = "env_runners/episode_return_mean"


@dataclass
class Run:
    """What to train: the RLlib config, the stop criteria and the model metadata to register."""

    config: Any
    stop: dict[str, float]
    algorithm: str
    env_id: str
    env_config: dict[str, Any]
    preset: str | None
    searched: tuple[str, ...] = ()
    """hyperparameters the config holds Tune search domains for"""
    num_samples: int = 1
    seed: int = 0

    @property
    def is_search(self) -> bool:
        """A Tune experiment (search domains, or several seeds) rather than one algorithm run."""
        return bool(self.searched) or self.num_samples > 1


def build_run(task: Mapping[str, Any]) -> Run:
    """The run a task asks for (raises ValueError with the field name on bad input)."""
    from serve_app.schemas import tune_search_space
    from tune_configs import get_preset
    from tune_configs.preset import check_stop

    hparams = dict(task.get("hparams") or {})
    seed, num_samples = int(task.get("seed") or 0), int(task.get("num_samples") or 1)
    if num_samples < 1:
        raise ValueError(f"num_samples: expected an int >= 1, got {num_samples}")
    domains = tune_search_space(dict(task.get("search_space") or {}))
    stop = check_stop(task.get("stop") or {})
    search = {"num_samples": num_samples, "seed": seed}
    if task.get("preset"):
        spec = get_preset(task["preset"])
        config = spec.config({**hparams, **domains}, seed=seed)
        searched = (*(k for k in spec.param_space() if k not in hparams), *domains)
        return Run(config, {**spec.stop(), **stop}, spec.algo, spec.env_id, dict(spec.env_config), spec.name,
                   searched, **search)  # fmt: skip
    from policies.rllib.configs import algorithm_config

    algo, env_id, env_config = task.get("algorithm"), task.get("env_id"), dict(task.get("env_config") or {})
    if not algo or not env_id:
        raise ValueError("task: give a preset, or an algorithm and an env_id")
    if not stop:
        raise ValueError("stop: a task without a preset needs at least one stop criterion")
    config = algorithm_config(algo, env_id, env_config, {**hparams, **domains}, seed=seed)
    return Run(config, stop, algo, env_id, env_config, None, tuple(domains), **search)


def _value(result: Mapping[str, Any], key: str) -> float | None:
    node: Any = result
    for part in key.split("/"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return float(node) if isinstance(node, int | float) and math.isfinite(node) else None


def stop_reached(result: Mapping[str, Any], stop: Mapping[str, float]) -> bool:
    """Tune's rule: stop as soon as any criterion's metric reaches its value."""
    return any((v := _value(result, k)) is not None and v >= target for k, target in stop.items())


def progress(result: Mapping[str, Any], stop: Mapping[str, float]) -> float:
    """0..1: how far the closest budget criterion (iterations, time, steps) is; a return target gives no estimate."""
    done = [
        min(v / target, 1.0)
        for k, target in stop.items()
        if k != RETURN and (v := _value(result, k)) is not None and target > 0
    ]
    return max(done, default=0.0)


def metrics_row(result: Mapping[str, Any], started: float) -> dict[str, Any]:
    """The metrics one iteration reports (numbers only; None when RLlib has none yet)."""
    steps = _value(result, "num_env_steps_sampled_lifetime")
    wall = time.monotonic() - started
    return {
        "training_iteration": _value(result, "training_iteration"),
        "time_total_s": _value(result, "time_total_s"),
        "num_env_steps_sampled_lifetime": steps,
        "episode_return_mean": _value(result, RETURN),
        "episode_len_mean": _value(result, "env_runners/episode_len_mean"),
        "env_steps_per_s": steps / wall if steps is not None and wall > 0 else None,
    }


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Cancelled("stopped by Ray (stop_job)")


@dataclass
class Trained:
    """A finished training: how to write its checkpoint, its final metrics, extra model metadata."""

    write_checkpoint: Callable[[Path], Any]
    metrics: dict[str, Any]
    extra: dict[str, Any]


def _train_one(task_id: str, run: Run, store: job_store.JobStore, wandb: JobWandb | None, stack: ExitStack) -> Trained:
    """One configuration, the algorithm loop in this process: a progress row per iteration, cancel checked."""
    algo = run.config.build_algo()
    stack.callback(algo.stop)  # leftover EnvRunner actors would hold the CPUs
    started, result = time.monotonic(), dict[str, Any]()
    while not stop_reached(result, run.stop):
        result = algo.train()
        row = metrics_row(result, started)
        if wandb is not None:
            wandb.log(row, step=int(row["training_iteration"] or 0))
        if store.report(task_id, progress(result, run.stop), row):
            raise Cancelled("cancel requested")
    return Trained(lambda path: algo.save_to_path(str(path)), metrics_row(result, started), {})


def _train_search(task_id: str, run: Run, store: job_store.JobStore, wandb: JobWandb | None) -> Trained:
    """A Tune experiment (:mod:`serve_app.train_search`); SIGTERM stops every trial, then the job ends cancelled."""
    from serve_app import train_search

    space = train_search.param_space(run)
    state = train_search.SearchState(task_id, store, run, train_search.trial_count(space, 1), wandb)

    def halt(signum: int, frame: Any) -> None:
        state.halt = "stopped by Ray (stop_job)"

    signal.signal(signal.SIGTERM, halt)
    checkpoint, best, trials = train_search.run_search(state, store.storage_root)
    store.note(task_id, trials=trials, best_trial=best["trial_id"])
    extra = {"trial_id": best["trial_id"], "trial_config": best["config"]}
    return Trained(lambda path: checkpoint.to_directory(str(path)), dict(best["metrics"]), extra)


def _init_ray() -> None:
    import ray

    address = os.environ.get("LWMECPS_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS")  # set for/by a Ray job
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # run by hand: a private local runtime
        ray.init(address="local", include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False)


def train(task_id: str) -> int:
    store = job_store.JobStore.open()
    task = store.start(task_id)
    if task is None:
        return 0  # cancelled (or already finished) before it started: nothing to do
    wandb: JobWandb | None = None
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with ExitStack() as stack:
            run = build_run(task)
            _init_ray()
            from policies.rllib.registration import register_envs

            register_envs()
            wandb = JobWandb.start(task_id, task, store.data_dir)
            if wandb is not None:
                store.note(task_id, wandb_run=wandb.describe())
            if run.is_search:
                trained = _train_search(task_id, run, store, wandb)
            else:
                trained = _train_one(task_id, run, store, wandb, stack)
            model_id = store.new_model_id()
            location = save_model(trained.write_checkpoint, run, store.storage_root, model_id, trained.metrics)
        store.complete(task_id, model_id, run, location, trained.metrics, trained.extra)
        print(f"task {task_id}: completed, model {model_id}", flush=True)
        _finish(wandb, ok=True)
        return 0
    except Cancelled as why:
        _finish(wandb, ok=False)
        if not store.cancel_requested(task_id):  # stopped without a cancel: Ray or the machine is going down
            store.fail(task_id, f"the Ray job was stopped ({why}) without a cancel request")
            return 1
        store.cancelled(task_id, str(why))
        print(f"task {task_id}: cancelled ({why})", flush=True)
        return 0
    except Exception as e:  # the task must end failed with one readable line, whatever went wrong
        _finish(wandb, ok=False)
        from serve_app.runtime import clean_line

        line = clean_line(e)
        store.fail(task_id, f"{type(e).__name__}: {line}"[:500])
        print(f"task {task_id}: failed: {line}", file=sys.stderr, flush=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _finish(wandb: JobWandb | None, ok: bool) -> None:
    if wandb is not None:
        with contextlib.suppress(Exception):  # the run's files are written; a failing upload must not hide the result
            wandb.finish(ok)


def save_model(
    write_checkpoint: Callable[[Path], Any], run: Run, storage_root: str, model_id: str, metrics: dict[str, Any]
) -> str:
    """Checkpoint + export under ``<storage_root>/models/<model_id>/``; returns that location."""
    from policies.rllib.export import export_checkpoint
    from serve_app import artifacts

    local = artifacts.local_staging(storage_root, model_id)
    checkpoint = local / artifacts.CHECKPOINT
    write_checkpoint(checkpoint)
    clean = {k: v for k, v in metrics.items() if v is not None}
    export_checkpoint(checkpoint, local / artifacts.EXPORT, metrics=clean, env_id=run.env_id, env_config=run.env_config)
    location = artifacts.model_dir(storage_root, model_id)
    artifacts.publish(local, location)
    return location


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.train_job", description=__doc__.splitlines()[0])
    parser.add_argument("--task-id", required=True, help="the id of the task document to train")
    args = parser.parse_args(argv)
    try:
        return train(args.task_id)
    except job_store.UnknownTask as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception:
        return 1


if __name__ == "__main__":
    sys.exit(main())
