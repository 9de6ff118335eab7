"""Run a preset through a Ray Tune ``Tuner``: deterministic run name, storage (local or cloud), checkpoints, W&B.

The W&B API key is never passed anywhere: W&B reads ``WANDB_API_KEY`` from the environment in online mode, and in
offline mode the key is hidden from the logging callback for the duration of the run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tune_configs import PresetError, get_preset
from tune_configs.preset import check_stop

PROJECT = "lwmecps-gym"
WANDB_MODES = ("offline", "online", "disabled")
SUMMARY_FILE = "summary.json"
RETURN = "env_runners/episode_return_mean"
#: metrics copied into the summary (nested names as Tune flattens them)
SUMMARY_METRICS = ("training_iteration", "time_total_s", "num_env_steps_sampled_lifetime", RETURN)


def _jsonable(value: Any) -> Any:
    """A stable JSON form of hyperparameter values, Tune domains included (for hashing and the summary)."""
    from ray.tune.search.sample import Domain

    if isinstance(value, Domain):
        return f"{type(value).__name__}{value.domain_str}:{value.get_sampler()}"
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def run_name(
    preset: str, seed: int, overrides: Mapping[str, Any] | None = None, stop: Mapping[str, Any] | None = None
) -> str:
    """``<preset>__s<seed>__<6 hex>``: the hash covers the hyperparameter and stop overrides."""
    blob = json.dumps(_jsonable({"overrides": overrides or {}, "stop": stop or {}}), sort_keys=True)
    return f"{preset}__s{seed}__{hashlib.sha256(blob.encode()).hexdigest()[:6]}"


def resolve_storage(storage_path: str | os.PathLike | None) -> str:
    """A cloud URI as given; a local path made absolute (default ``./runs``)."""
    path = str(storage_path or "runs")
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _wandb_mode(wandb: str | None) -> str:
    mode = wandb or os.environ.get("WANDB_MODE") or "offline"
    if mode not in WANDB_MODES:
        raise PresetError(f"wandb: unknown mode {mode!r} (known: {', '.join(WANDB_MODES)})")
    return mode


def _wandb_callback(mode: str, group: str) -> Any:
    from ray.air.integrations.wandb import WandbLoggerCallback

    kwargs: dict[str, Any] = {"mode": mode}
    if base_url := os.environ.get("WANDB_BASE_URL"):  # the logging actor may not inherit our environment
        kwargs["settings"] = {"base_url": base_url}
    return WandbLoggerCallback(project=PROJECT, group=group, **kwargs)


@contextmanager
def _wandb_env(mode: str) -> Iterator[None]:
    """``WANDB_MODE=mode`` for the run (W&B and the callback's key check read the environment); outside online
    mode ``WANDB_API_KEY`` is hidden, else the callback copies it into its logging actor's runtime env. Restored
    afterwards."""
    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_API_KEY")}
    os.environ["WANDB_MODE"] = mode
    if mode != "online":
        os.environ.pop("WANDB_API_KEY", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ensure_ray() -> bool:
    """Connect to ``RAY_ADDRESS`` (set inside a Ray job) or start a local runtime; True if we started one."""
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        # "local": never attach silently to a cluster someone else started with `ray start` on this machine
        ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=512 * 1024**2)
    return True


def _exists(path: str) -> bool:
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    return fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


def _trial_row(result: Any, searched: list[str]) -> dict[str, Any]:
    metrics = result.metrics or {}
    env_runners = metrics.get("env_runners") or {}
    values = {k: metrics.get(k) for k in SUMMARY_METRICS[:3]} | {RETURN: env_runners.get("episode_return_mean")}
    return {
        "trial_id": metrics.get("trial_id"),
        "path": result.path,
        "config": {k: _jsonable((result.config or {}).get(k)) for k in searched},
        "metrics": values,
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "error": str(result.error).splitlines()[0] if result.error else None,
    }


def summarize(results: Any, searched: list[str]) -> dict[str, Any]:
    """Per-trial metrics and checkpoint, and the best trial (highest episode return; else the longest run)."""
    trials = [_trial_row(r, searched) for r in results]
    ok = [t for t in trials if t["error"] is None]
    scored = [t for t in ok if t["metrics"][RETURN] is not None]
    best: dict[str, Any] | None = None
    if scored:
        best = max(scored, key=lambda t: t["metrics"][RETURN])
    elif ok:
        best = max(ok, key=lambda t: t["metrics"]["training_iteration"] or 0)
    return {"num_trials": len(trials), "num_errors": len(trials) - len(ok), "best": best, "trials": trials}


def run(
    preset: str,
    *,
    storage_path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    stop: Mapping[str, Any] | None = None,
    num_samples: int = 1,
    seed: int = 0,
    wandb: str | None = None,
    num_env_runners: int = 0,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``preset`` through Tune and return (and write as ``summary.json`` in the experiment dir) a summary.

    ``num_samples`` trials per point of the preset's search grid, with seeds ``seed, seed+1, ...``. ``overrides``
    and ``stop`` are merged over the preset's hyperparameters and stop criteria and validated first (bad input
    raises :class:`PresetError` before Ray starts). ``wandb`` defaults to ``$WANDB_MODE``, else ``offline``.
    """
    spec = get_preset(preset)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise PresetError(f"num_samples: expected an int >= 1, got {num_samples!r}")
    stop_overrides = check_stop(stop or {})
    criteria = {**spec.stop(), **stop_overrides}
    mode = _wandb_mode(wandb)
    config = spec.config(overrides, seed=seed, num_env_runners=num_env_runners)  # validates the overrides
    name = run_name(preset, seed, overrides, stop_overrides)
    storage = resolve_storage(storage_path)
    experiment = f"{storage.rstrip('/')}/{name}"
    if _exists(experiment) and not resume:
        raise PresetError(f"run {name} already exists in {storage}: resume it, or change the seed or overrides")

    from ray import tune

    from policies.rllib.registration import register_envs
    from tune_configs.progress import ProgressLine

    space = config.to_dict()
    space["seed"] = tune.grid_search([seed + i for i in range(num_samples)]) if num_samples > 1 else seed
    searched = [*spec.param_space(), *(k for k, v in (overrides or {}).items() if _is_search(v)), "seed"]
    callbacks: list[tune.Callback] = [ProgressLine()] if progress else []
    if mode != "disabled":
        callbacks.append(_wandb_callback(mode, group=name))
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        stop=criteria,
        callbacks=callbacks,
        verbose=0,
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_at_end=True, checkpoint_frequency=checkpoint_every or spec.checkpoint_every, num_to_keep=3
        ),
    )
    algo_class = config.algo_class
    assert algo_class is not None, f"{spec.algo}: config without an algorithm class"
    started = _ensure_ray()
    try:
        register_envs()  # the env creators must be in this cluster's registry
        with _wandb_env(mode):
            if resume and tune.Tuner.can_restore(experiment):
                tuner = tune.Tuner.restore(experiment, trainable=algo_class, resume_errored=True)
            else:
                tuner = tune.Tuner(algo_class, param_space=space, run_config=run_config)
            results = tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    summary = {
        "name": name,
        "preset": preset,
        "algo": spec.algo,
        "env_id": spec.env_id,
        "seed": seed,
        "num_samples": num_samples,
        "overrides": _jsonable(dict(overrides or {})),
        "stop": criteria,
        "wandb_mode": mode,
        "experiment_path": results.experiment_path,
        **summarize(results, searched),
    }
    with results.filesystem.open_output_stream(f"{results.experiment_path}/{SUMMARY_FILE}") as out:
        out.write(json.dumps(summary, indent=2).encode())
    return summary


def _is_search(value: Any) -> bool:
    from ray.tune.search.sample import Domain

    return isinstance(value, Domain) or (isinstance(value, dict) and set(value) == {"grid_search"})
