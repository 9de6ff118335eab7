"""Shared pieces of the learning benchmarks (``learning_testapp.py``, ``learning_city.py``, ``ppo_throughput.py``).

Time-boxed PPO training of one seed (in-process Ray runtime, checkpoint + learning curve on disk), a policy that
switches to each training seed's model when the evaluation seed changes, Pareto checks and the doc writer.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_MODE", "disabled")
# one thread per process: on a loaded machine torch/OpenMP worker threads that spin-wait on preempted peers made
# a PPO iteration 20x slower (measured here); set before torch or numba is imported
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from envs.world import World  # noqa: E402
from policies.base import Context, PlacementPolicy  # noqa: E402
from policies.evaluate import EvalResult, Interval  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
RUNS = ROOT / "runs" / "learning"


#: set by :func:`run_parallel` for its jobs: the GCS address of the orchestrator's Ray runtime
SHARED_RAY = "LWMECPS_BENCH_RAY_ADDRESS"


def ray_init(num_cpus: int = 2) -> str:
    """Join the orchestrator's runtime if :data:`SHARED_RAY` is set, else start a local one; returns its address.

    Sharing one runtime matters on a loaded machine: several Ray runtimes starting at once time out."""
    import ray

    if os.environ.get(SHARED_RAY):
        ray.init(address=os.environ[SHARED_RAY], log_to_driver=False)
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=200 * 1024**2,
            log_to_driver=False,
        )
    return str(ray.get_runtime_context().gcs_address)


def train_ppo(
    env_id: str,
    env_config: Mapping[str, Any],
    hparams: Mapping[str, Any],
    *,
    seconds: float,
    steps: float = float("inf"),
    seed: int,
    out: Path,
    num_envs: int = 16,
    num_env_runners: int = 0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train PPO until ``steps`` env steps or ``seconds`` of wall time (the iteration running at the deadline
    finishes), save a checkpoint under ``out/checkpoint`` and the curve under ``out/curve.json``; returns the
    curve record. ``cpu_s`` is this process's CPU time (sampling and learning both run in it when
    ``num_env_runners=0``): on a shared machine, what dedicated cores would have needed."""
    import torch

    from policies.rllib.configs import algorithm_config

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    cfg = algorithm_config(
        "PPO",
        env_id,
        dict(env_config),
        dict(hparams),
        num_env_runners=num_env_runners,
        num_envs_per_env_runner=num_envs,
        seed=seed,
    )
    algo = cfg.build_algo()
    rows: list[dict[str, float]] = []
    start, cpu0 = time.perf_counter(), time.process_time()
    try:
        while time.perf_counter() - start < seconds and (not rows or rows[-1]["steps"] < steps):
            r = algo.train()
            runners = r["env_runners"]
            rows.append(
                {
                    "iter": len(rows) + 1,
                    "seconds": time.perf_counter() - start,
                    "cpu_s": time.process_time() - cpu0,
                    "steps": float(runners["num_env_steps_sampled_lifetime"]),
                    "return": float(runners.get("episode_return_mean", np.nan)),
                }
            )
            last = rows[-1]
            progress(
                f"[{env_id} seed {seed}] iter {last['iter']:4.0f}  steps {last['steps']:9.0f}  "
                f"{last['seconds']:6.0f} s  return {last['return']:10.1f}"
            )
        ckpt = out / "checkpoint"
        algo.save(str(ckpt))
    finally:
        algo.stop()
    record = {
        "env_id": env_id,
        "env_config": dict(env_config),
        "hparams": dict(hparams),
        "seed": seed,
        "num_envs": num_envs,
        "budget_s": seconds,
        "budget_steps": steps,
        "seconds": rows[-1]["seconds"] if rows else 0.0,
        "cpu_s": rows[-1]["cpu_s"] if rows else 0.0,
        "steps": rows[-1]["steps"] if rows else 0.0,
        "checkpoint": str(ckpt),
        "curve": rows,
    }
    (out / "curve.json").write_text(json.dumps(record, indent=1))
    return record


def run_parallel(commands: Sequence[list[str]], parallel: int, log_dir: Path) -> None:
    """Run subprocess commands, ``parallel`` at a time, echoing each one's last output line as progress.

    The jobs join one Ray runtime started here (their algorithms sample and learn in their own processes:
    ``num_env_runners=0``), and start at least 20 s apart."""
    import ray

    log_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ | {SHARED_RAY: ray_init(num_cpus=16)}
    pending = list(enumerate(commands))
    running: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    while pending or running:
        while pending and len(running) < parallel:
            i, cmd = pending.pop(0)
            log = log_dir / f"job{i}.log"
            running.append((i, subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env), log))
            if pending and len(running) < parallel:
                time.sleep(20)
        time.sleep(15)
        for item in list(running):
            i, proc, log = item
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("[")]
            if lines:
                print(lines[-1], flush=True)
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    raise RuntimeError(f"job {i} failed (exit {proc.returncode}), see {log}")
    ray.shutdown()


class PerSeed(PlacementPolicy):
    """One trained policy per evaluation seed: seed ``s`` is evaluated with the model of training seed ``s``."""

    def __init__(self, name: str, by_seed: Mapping[int, PlacementPolicy]):
        self.name = name  # type: ignore[misc]
        self.by_seed = dict(by_seed)
        self.current = next(iter(self.by_seed.values()))

    def reset(self, world: World, seed: int | None = None) -> None:
        if seed not in self.by_seed:
            raise ValueError(f"{self.name}: no trained policy for seed {seed} (have {sorted(self.by_seed)})")
        self.current = self.by_seed[seed]
        self.current.reset(world, seed)

    def act(self, ctx: Context) -> np.ndarray:
        return self.current.act(ctx)


def load_ppo(run_dir: Path, seeds: Sequence[int], name: str = "ppo") -> PerSeed:
    from policies.rllib.policy import RLlibPolicy

    return PerSeed(name, {s: RLlibPolicy.from_checkpoint(run_dir / f"seed{s}" / "checkpoint") for s in seeds})


def curves(run_dir: Path, seeds: Sequence[int], x: str = "steps") -> dict[str, tuple[list[float], list[float]]]:
    out = {}
    for s in seeds:
        rec = json.loads((run_dir / f"seed{s}" / "curve.json").read_text())
        rows = [r for r in rec["curve"] if not np.isnan(r["return"])]  # iterations that finished no episode
        out[f"seed {s}"] = ([r[x] for r in rows], [r["return"] for r in rows])
    return out


def training_records(run_dir: Path, seeds: Sequence[int]) -> list[dict[str, Any]]:
    return [json.loads((run_dir / f"seed{s}" / "curve.json").read_text()) for s in seeds]


def versus(ours: Mapping[str, Interval], theirs: Mapping[str, Interval], latency_tol: float) -> dict[str, Any]:
    """Reward intervals disjoint and better? Pareto relation on (mean latency, mean replicas), ties within tol."""
    better_reward = ours["reward"].lo > theirs["reward"].hi
    dl = ours["latency_mean"].mean - theirs["latency_mean"].mean
    dr = ours["replicas"].mean - theirs["replicas"].mean
    lat_le, rep_le = dl <= latency_tol, dr <= 1e-9
    dominates = (dl < -latency_tol and rep_le) or (dr < -1e-9 and lat_le)
    dominated = dl >= -latency_tol and dr >= -1e-9 and (dl > latency_tol or dr > 1e-9)
    return {"better_reward": better_reward, "dominates": dominates, "dominated": dominated, "dl": dl, "dr": dr}


def load_avg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def machine() -> str:
    import ray
    import torch

    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, ray {ray.__version__}, torch {torch.__version__}"
    )


def write_section(name: str, block: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (append the section if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    header = "# Benchmarks\n\nEach section is regenerated by its script in `bench/`.\n"
    text = DOC.read_text() if DOC.exists() else header
    section = f"{start}\n{block.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)


def eval_pickle(result: EvalResult, path: Path) -> None:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))


def eval_unpickle(path: Path) -> EvalResult:
    import pickle

    result = pickle.loads(path.read_bytes())
    assert isinstance(result, EvalResult)
    return result
