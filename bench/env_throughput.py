"""Environment throughput: steps/s of every preset, single and batched, beside Gymnasium CartPole-v1.

Run: ``.venv/bin/python bench/env_throughput.py [--seconds 2] [--no-write]``. Prints a table and replaces the
``env-throughput`` block of ``docs/benchmarks.md``. Every figure is measured in this run, the same way for our
envs and CartPole: random actions sampled before timing, resets at episode ends included in the time.

* ``single raw``: the env class itself (our ``PlacementEnv`` / CartPole's ``CartPoleEnv``), reset by the loop
  after ``max_episode_steps``;
* ``single make``: ``gym.make(id)`` with its default wrappers (TimeLimit, OrderEnforcing, env checker);
* ``batched 1p``: the vector env (``vector_entry_point``) stepping ``num_envs`` copies in one process;
* ``batched 2p``: two processes each running such a vector env; the aggregate env-steps/s.

Rates are given per wall second and per CPU second of the measuring processes (the machine may be shared:
the CPU-second rate is what one dedicated core would do). Synthetic demand traces are generated once per world
and cached; the loops below draw from the env's default 16 traces, which are generated before timing.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learning import DOC, write_section  # noqa: E402

import envs  # noqa: E402 - registers the ids
from envs.placement_env import PlacementEnv  # noqa: E402

PRESETS = [("TestApp4BS", "lwmecps/TestApp4BS-v0"), ("ReferenceCity", "lwmecps/ReferenceCity-v0"),
           ("LargeCity", "lwmecps/LargeCity-v0")]  # fmt: skip
CARTPOLE = ("CartPole-v1", "CartPole-v1")
#: num_envs of the batched runs (LargeCity rows are 100x heavier than CartPole's)
NUM_ENVS = {"lwmecps/TestApp4BS-v0": 1024, "lwmecps/ReferenceCity-v0": 256, "lwmecps/LargeCity-v0": 32,
            "CartPole-v1": 1024}  # fmt: skip
TARGET_SINGLE, TARGET_BATCHED = 25_000, 250_000
NOTES = (
    "Where the time goes (ReferenceCity, random actions): the simulator and the MDP pieces run as numba kernels "
    "(`envs/kernels.py`; the numpy reference path gives the same results to ~1e-14 and is the "
    "`single raw, numpy path` row). A slot routes S x C = 1,000 service-cell flows; random actions leave about "
    "40% of the services without a replica after the capacity repair, so most rows use all three M/M/c "
    "fail-over attempts, and every served flow needs one `exp` for its SLA tail probability. That costs "
    "~30-40 us of compiled work per env-step, which caps a core at roughly 25-30k env-steps/s batched; the "
    "single env adds ~40-80 us of Python and numba-dispatch overhead per step (four kernel calls, the info "
    "dict, the Backend protocol). The targets would need a cheaper slot model (fewer flows or attempts per "
    "step, a vectorised exp) rather than more tuning of this one."
)


def _warm_traces(env: Any) -> None:
    inner = getattr(env, "unwrapped", env)
    if isinstance(inner, PlacementEnv):
        for key in inner.traces:
            inner.world.demand.trace(key)


def _single(gid: str, raw: bool) -> Any:
    if gid == CARTPOLE[1]:
        from gymnasium.envs.classic_control import CartPoleEnv

        return CartPoleEnv() if raw else gym.make(gid)
    return PlacementEnv(scenario=envs.ENV_IDS[gid]) if raw else gym.make(gid)


def _time_loop(step: Callable[[], int], seconds: float) -> tuple[int, float, float]:
    """Run ``step`` (returns env-steps done) until ``seconds`` of wall time pass; (steps, wall s, CPU s)."""
    step()  # warm-up (JIT, caches)
    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        n += step()
    return n, time.perf_counter() - w0, time.process_time() - c0


def measure_single(gid: str, raw: bool, seconds: float, numpy_path: bool = False) -> tuple[int, float, float]:
    env = _single(gid, raw)
    if numpy_path:  # the numpy reference code instead of the numba kernels (same results)
        env.dyn.compiled = env.backend.model.compiled = False
    _warm_traces(env)
    horizon = gym.spec(gid).max_episode_steps or 10**9
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]
    env.reset(seed=0)
    state = {"t": 0}

    def run() -> int:
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            state["t"] += 1
            if term or trunc or state["t"] >= horizon:
                env.reset()
                state["t"] = 0
        return len(actions)

    return _time_loop(run, seconds)


def _vector(gid: str) -> tuple[Any, list[Any]]:
    """The vector env of ``gid`` (traces generated), reset, and 8 pre-sampled batched actions."""
    vec: Any = gym.make_vec(gid, num_envs=NUM_ENVS[gid], vectorization_mode="vector_entry_point")
    for key in getattr(vec, "traces", []):
        vec.world.demand.trace(key)
    vec.action_space.seed(0)
    actions = [vec.action_space.sample() for _ in range(8)]
    vec.reset(seed=0)
    return vec, actions


def measure_batched(gid: str, seconds: float) -> tuple[int, float, float]:
    vec, actions = _vector(gid)

    def run() -> int:
        for a in actions:
            vec.step(a)
        return len(actions) * vec.num_envs

    return _time_loop(run, seconds)


def _worker(gid: str, seconds: float, barrier: Any, out: Any) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    vec, actions = _vector(gid)
    for a in actions:
        vec.step(a)
    barrier.wait()
    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        for a in actions:
            vec.step(a)
        n += len(actions) * vec.num_envs
    out.put((n, time.perf_counter() - w0, time.process_time() - c0))


def measure_two_procs(gid: str, seconds: float) -> tuple[int, float, float]:
    """Two processes, one vector env each; (total steps, max wall s, CPU s summed as per-process rates)."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(gid, seconds, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    res = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    n = sum(r[0] for r in res)
    wall = max(r[1] for r in res)
    # CPU-second rate of 2 cores = the sum of each process's steps per CPU second; report it as n / cpu_eq
    cpu_rate = sum(r[0] / max(r[2], 1e-9) for r in res)
    return n, wall, n / cpu_rate


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def run(seconds: float) -> tuple[list[dict[str, Any]], float]:
    rows = []
    t0 = time.perf_counter()
    modes: list[tuple[str, Callable[[str], tuple[int, float, float]]]] = [
        ("single raw", lambda g: measure_single(g, True, seconds)),
        ("single make", lambda g: measure_single(g, False, seconds)),
        ("batched 1p", lambda g: measure_batched(g, seconds)),
        ("batched 2p", lambda g: measure_two_procs(g, seconds)),
    ]
    for name, gid in [CARTPOLE, *PRESETS]:
        for mode, fn in modes:
            print(f"[{time.perf_counter() - t0:6.1f}s] {name:14s} {mode:12s} ...", end="", flush=True, file=sys.stderr)
            n, wall, cpu = fn(gid)
            rows.append({"env": name, "gid": gid, "mode": mode, "wall": n / wall, "cpu": n / max(cpu, 1e-9)})
            print(f" {_fmt(n / wall)} steps/s (wall), {_fmt(n / max(cpu, 1e-9))} (CPU)", file=sys.stderr)
    print(f"[{time.perf_counter() - t0:6.1f}s] ReferenceCity  numpy path   ...", end="", flush=True, file=sys.stderr)
    n, wall, cpu = measure_single(PRESETS[1][1], True, seconds / 2, numpy_path=True)
    rows.append({"env": "ReferenceCity", "gid": PRESETS[1][1], "mode": "single raw, numpy path", "wall": n / wall,
                 "cpu": n / max(cpu, 1e-9)})  # fmt: skip
    print(f" {_fmt(n / wall)} steps/s (wall)", file=sys.stderr)
    return rows, time.perf_counter() - t0


def table(rows: list[dict[str, Any]]) -> str:
    cart = {r["mode"]: r for r in rows if r["env"] == CARTPOLE[0]}
    lines = [
        "| env | mode | num_envs | steps/s (wall) | steps/s (per CPU s) | vs CartPole (wall) | vs CartPole (CPU) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        c = cart[r["mode"].split(",")[0]]
        n = NUM_ENVS[r["gid"]] if r["mode"].startswith("batched") else 1
        n_txt = f"{n} x 2" if r["mode"] == "batched 2p" else str(n)
        lines.append(
            f"| {r['env']} | {r['mode']} | {n_txt} | {_fmt(r['wall'])} | {_fmt(r['cpu'])} | "
            f"{r['wall'] / c['wall']:.3f} | {r['cpu'] / c['cpu']:.3f} |"
        )
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> str:
    get = {(r["env"], r["mode"]): r for r in rows}
    out = ["| target | measured (wall) | measured (per CPU s) | met |", "| --- | ---: | ---: | --- |"]
    for label, key, goal in [
        ("ReferenceCity single raw >= 25,000 steps/s on one core", ("ReferenceCity", "single raw"), TARGET_SINGLE),
        ("ReferenceCity single make >= 25,000 steps/s on one core", ("ReferenceCity", "single make"), TARGET_SINGLE),
        ("ReferenceCity batched >= 250,000 env-steps/s on 2 cores", ("ReferenceCity", "batched 2p"), TARGET_BATCHED),
    ]:
        r = get[key]
        met = "yes" if r["wall"] >= goal else ("only per CPU s" if r["cpu"] >= goal else "no")
        out.append(f"| {label} | {_fmt(r['wall'])} | {_fmt(r['cpu'])} | {met} |")
    return "\n".join(out)


def machine() -> str:
    import numba

    load = os.getloadavg()
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}, gymnasium {gym.__version__}; "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} (1 / 5 min)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    rows, total = run(args.seconds)
    block = "\n\n".join(
        [
            "## Environment throughput",
            f"`.venv/bin/python bench/env_throughput.py --seconds {args.seconds:g}` "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {total:.0f} s). Machine: {machine()}.",
            "Random actions are sampled before timing; resets at episode ends are inside the timed loop. "
            "`single raw` is the env class, `single make` adds `gym.make`'s wrappers, `batched 1p` is the vector "
            "env in one process, `batched 2p` two processes with one vector env each (aggregate). "
            "`per CPU s` divides by the CPU time of the measuring processes: on a shared machine it is what "
            "dedicated cores would do.",
            table(rows),
            "Targets (issue 2):",
            targets(rows),
            NOTES,
        ]
    )
    print(block)
    if not args.no_write:
        write_section("env-throughput", block)
        print(f"\nwritten to {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
