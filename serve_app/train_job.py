"""``python -m serve_app.train_job --task-id X``: the Ray job that trains one task.

Reads the task from MongoDB, builds the RLlib config (a ``tune_configs`` preset with the task's hyperparameters
over it, or ``algorithm`` + ``env_id`` + ``env_config`` through :func:`policies.rllib.configs.algorithm_config`),
then runs the algorithm loop itself so that every iteration writes the task's progress and latest metrics and a
metrics row, and checks the task's ``cancel_requested`` flag. When a stop criterion is reached it saves the
checkpoint and the framework-neutral export under ``<storage_root>/models/<model_id>/``, registers the model and
marks the task completed. Any error marks the task failed with one clean line; SIGTERM (``stop_job``) or the
cancel flag marks it cancelled (a SIGTERM without a cancel request, e.g. the Ray node going down: failed).
Exit status: 0 completed or cancelled, 1 failed, 2 unknown task.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serve_app import job_store

RETURN = "env_runners/episode_return_mean"


class Cancelled(Exception):
    """The task was cancelled (flag in the task, or SIGTERM from ``stop_job``)."""


@dataclass
class Run:
    """What to train: the RLlib config, the stop criteria and the model metadata to register."""

    config: Any
    stop: dict[str, float]
    algorithm: str
    env_id: str
    env_config: dict[str, Any]
    preset: str | None


def build_run(task: Mapping[str, Any]) -> Run:
    """The run a task asks for (raises ValueError with the field name on bad input)."""
    from tune_configs import get_preset
    from tune_configs.preset import check_stop

    hparams = dict(task.get("hparams") or {})
    seed = int(task.get("seed") or 0)
    if task.get("search_space") or int(task.get("num_samples") or 1) > 1:
        raise ValueError("search_space: Tune searches are not run by the training job yet (one configuration only)")
    stop = check_stop(task.get("stop") or {})
    if task.get("preset"):
        spec = get_preset(task["preset"])
        if spec.param_space():
            raise ValueError(f"preset: {spec.name} is a Tune search; the training job runs one configuration only")
        config = spec.config(hparams, seed=seed)
        return Run(config, {**spec.stop(), **stop}, spec.algo, spec.env_id, dict(spec.env_config), spec.name)
    from policies.rllib.configs import algorithm_config

    algo, env_id, env_config = task.get("algorithm"), task.get("env_id"), dict(task.get("env_config") or {})
    if not algo or not env_id:
        raise ValueError("task: give a preset, or an algorithm and an env_id")
    if not stop:
        raise ValueError("stop: a task without a preset needs at least one stop criterion")
    return Run(algorithm_config(algo, env_id, env_config, hparams, seed=seed), stop, algo, env_id, env_config, None)


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


def train(task_id: str) -> int:
    store = job_store.JobStore.open()
    task = store.start(task_id)
    if task is None:
        return 0  # cancelled (or already finished) before it started: nothing to do
    algo = None
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run = build_run(task)
        import ray

        from policies.rllib.registration import register_envs

        if os.environ.get("RAY_ADDRESS"):  # set inside a Ray job
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        else:  # run by hand: a private local runtime
            ray.init(address="local", include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False)
        register_envs()
        algo = run.config.build_algo()
        started, result = time.monotonic(), dict[str, Any]()
        while not stop_reached(result, run.stop):
            result = algo.train()
            row = metrics_row(result, started)
            if store.report(task_id, progress(result, run.stop), row):
                raise Cancelled("cancel requested")
        model_id = store.new_model_id()
        location = save_model(algo, run, store.storage_root, model_id, metrics_row(result, started))
        store.complete(task_id, model_id, run, location, metrics_row(result, started))
        print(f"task {task_id}: completed, model {model_id}", flush=True)
        return 0
    except Cancelled as why:
        if not store.cancel_requested(task_id):  # stopped without a cancel: Ray or the machine is going down
            store.fail(task_id, f"the Ray job was stopped ({why}) without a cancel request")
            return 1
        store.cancelled(task_id, str(why))
        print(f"task {task_id}: cancelled ({why})", flush=True)
        return 0
    except Exception as e:  # the task must end failed with one readable line, whatever went wrong
        line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        store.fail(task_id, f"{type(e).__name__}: {line}"[:500])
        print(f"task {task_id}: failed: {line}", file=sys.stderr, flush=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if algo is not None:
            algo.stop()


def save_model(algo: Any, run: Run, storage_root: str, model_id: str, metrics: dict[str, Any]) -> str:
    """Checkpoint + export under ``<storage_root>/models/<model_id>/``; returns that location."""
    from policies.rllib.export import export_checkpoint
    from serve_app import artifacts

    local = artifacts.local_staging(storage_root, model_id)
    checkpoint = local / artifacts.CHECKPOINT
    algo.save_to_path(str(checkpoint))
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
