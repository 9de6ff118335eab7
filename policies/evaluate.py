"""Evaluation harness: day-long rollouts of any :class:`PlacementPolicy` over seeds, with 95 % t-intervals.

Every policy of a call sees exactly the same (trace, start slot) per seed, so differences are paired. Default
held-out traces: synthetic demand uses trace seeds ``1000 + seed`` (training uses 0..15); recorded profiles
use every profile except the scenario's default (testapp-4bs: train on ``A``, evaluate on ``B``).

Per rollout metrics (keys of :data:`METRICS`): total reward; mean and p95 over steps of the slot latency
(each slot's latency is already the demand-weighted mean over its requests); SLA-violation rate (% of
requests, mean over steps); mean replicas; total replica changes; rejected slots and mask violations (counts
of slots whose chosen count ``action_mask`` forbids); decision time (ms per ``act`` call).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from envs import ENV_IDS
from envs.backends import Backend
from envs.placement_env import PlacementEnv
from envs.presets import PRESETS, get_scenario
from envs.scenario import Scenario
from envs.world import World, build_world
from policies.base import Context, PlacementPolicy
from policies.heuristics import mask_top

#: metric key -> (label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "reward": ("reward (sum)", True),
    "latency_mean": ("latency mean (ms)", False),
    "latency_p95": ("latency p95 (ms)", False),
    "sla_violation_pct": ("SLA violations (%)", False),
    "replicas": ("replicas (mean)", False),
    "changes": ("changes (sum)", False),
    "rejected": ("rejected (sum)", False),
    "mask_violations": ("mask violations (sum)", False),
    "decision_ms": ("decision (ms/step)", False),
}


@dataclass(frozen=True)
class Interval:
    """Mean over seeds with the half-width of its two-sided t confidence interval (nan for one seed)."""

    mean: float
    half_width: float
    n: int

    @property
    def lo(self) -> float:
        return self.mean - self.half_width

    @property
    def hi(self) -> float:
        return self.mean + self.half_width


def confidence_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("confidence_interval: no values")
    if x.size == 1:
        return Interval(float(x[0]), math.nan, 1)
    t = float(stats.t.ppf(0.5 + level / 2, x.size - 1))
    return Interval(float(x.mean()), t * float(x.std(ddof=1)) / math.sqrt(x.size), int(x.size))


@dataclass
class Rollout:
    policy: str
    seed: int
    trace: int | str
    start_slot: int
    metrics: dict[str, float]
    slots: np.ndarray  # (T,) slot of the day served at each step
    latency_ms: np.ndarray  # (T,)
    reward: np.ndarray  # (T,)


@dataclass
class EvalResult:
    env: str
    scenario: str
    slot_seconds: int
    steps: int
    seeds: list[int]
    rollouts: list[Rollout] = field(default_factory=list)
    level: float = 0.95

    @property
    def policies(self) -> list[str]:
        return list(dict.fromkeys(r.policy for r in self.rollouts))

    def of(self, policy: str) -> list[Rollout]:
        return [r for r in self.rollouts if r.policy == policy]

    def summary(self) -> dict[str, dict[str, Interval]]:
        """Per policy and metric: mean over seeds with its confidence interval."""
        return {
            p: {m: confidence_interval((r.metrics[m] for r in self.of(p)), self.level) for m in METRICS}
            for p in self.policies
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary and per-seed metrics (per-step series left out)."""
        return {
            "env": self.env,
            "scenario": self.scenario,
            "steps": self.steps,
            "seeds": self.seeds,
            "level": self.level,
            "summary": {
                p: {m: {"mean": iv.mean, "half_width": iv.half_width, "n": iv.n} for m, iv in ms.items()}
                for p, ms in self.summary().items()
            },
            "rollouts": [
                {"policy": r.policy, "seed": r.seed, "trace": r.trace, "start_slot": r.start_slot, **r.metrics}
                for r in self.rollouts
            ],
        }


def resolve_world(env: str | Scenario | World) -> tuple[str, World]:
    """An env id (``lwmecps/...``), a preset name, a :class:`Scenario` or a built :class:`World`."""
    if isinstance(env, World):
        return env.scenario.name, env
    if isinstance(env, Scenario):
        return env.name, build_world(env)
    if not isinstance(env, str):
        raise TypeError(f"env: expected an env id, preset name, Scenario or World, got {type(env).__name__}")
    if env in ENV_IDS:
        return env, build_world(get_scenario(ENV_IDS[env]))
    if env in PRESETS:
        return env, build_world(get_scenario(env))
    raise ValueError(f"env: unknown env id {env!r} (known: {', '.join([*ENV_IDS, *PRESETS])})")


def held_out_traces(world: World, seeds: Sequence[int]) -> list[int | str]:
    """One held-out demand trace per seed (see the module docstring)."""
    spec = world.scenario.demand
    if spec.kind == "synthetic":
        return [1000 + s for s in seeds]
    held: list[int | str] = sorted(set(spec.profiles) - {spec.default_profile}) or [world.demand.default_key]
    return [held[i % len(held)] for i in range(len(seeds))]


def rollout(
    policy: PlacementPolicy,
    world: World,
    seed: int,
    trace: int | str,
    start_slot: int,
    steps: int,
    name: str,
    backend: Callable[[World], Backend] | None = None,
) -> Rollout:
    """Run ``policy`` for ``steps`` slots on a fresh env over ``world`` (on ``backend(world)`` when given, e.g. a
    cluster; default the simulator); time only ``act``."""
    env = PlacementEnv(world=world, traces=[trace], backend=backend(world) if backend is not None else None)
    env.reset(seed=seed, options={"trace": trace, "start_slot": start_slot})
    policy.reset(world, seed)
    nvec = world.slot_max + 1
    K = world.n_slots
    slots, lat, rew = np.empty(steps, np.int64), np.empty(steps), np.empty(steps)
    viol, reps = np.empty(steps), np.empty(steps)
    changes = rejected = bad = 0
    spent = 0.0
    for t in range(steps):
        ctx = Context.from_env(env)
        slots[t] = ctx.snapshot.slot
        t0 = time.perf_counter()
        action = np.asarray(policy.act(ctx))
        spent += time.perf_counter() - t0
        if action.shape != (K,):
            raise ValueError(f"policy {name!r}: act() returned shape {action.shape}, expected ({K},)")
        bad += int(((action < 0) | (action > mask_top(ctx.obs["action_mask"], nvec))).sum())
        _, r, _, _, info = env.step(action)
        lat[t], rew[t], viol[t], reps[t] = info["latency_ms"], r, info["violations"], info["replicas"]
        changes += info["changes"]
        rejected += info["rejected"]
    env.close()
    metrics = {
        "reward": float(rew.sum()),
        "latency_mean": float(lat.mean()),
        "latency_p95": float(np.percentile(lat, 95)),
        "sla_violation_pct": float(100.0 * viol.mean()),
        "replicas": float(reps.mean()),
        "changes": float(changes),
        "rejected": float(rejected),
        "mask_violations": float(bad),
        "decision_ms": 1000.0 * spent / steps,
    }
    return Rollout(name, seed, trace, start_slot, metrics, slots, lat, rew)


def evaluate(
    policies: Mapping[str, PlacementPolicy],
    env: str | Scenario | World,
    seeds: int | Sequence[int] = 5,
    traces: Sequence[int | str] | None = None,
    steps: int | None = None,
    start_slot: int | str = 0,
    level: float = 0.95,
    progress: Callable[[str], None] | None = None,
    backend: Callable[[World], Backend] | None = None,
) -> EvalResult:
    """Roll every policy out once per seed and aggregate.

    ``seeds``: a count ``n`` (seeds ``0..n-1``) or explicit seeds; the issue asks for >= 5, at least 1 is
    required. ``traces``: one demand trace key per seed, cycled (default :func:`held_out_traces`). ``steps``:
    slots per rollout (default a whole day). ``start_slot``: an int, or ``"random"`` for a start slot drawn
    from the seed (the same for every policy). ``backend``: a factory called once per rollout with the world
    (e.g. ``lambda w: KubernetesBackend(w, latency, config)`` to evaluate on a cluster); default the simulator.
    """
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError("policies: need a non-empty mapping of name -> PlacementPolicy")
    for name, pol in policies.items():
        if not isinstance(pol, PlacementPolicy):
            raise TypeError(f"policies[{name!r}]: not a PlacementPolicy ({type(pol).__name__})")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError(f"seeds: need at least 1 seed, got {seeds!r}")
    label, world = resolve_world(env)
    day = world.demand.slots_per_day
    steps = day if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps: need at least 1 step, got {steps}")
    if not (start_slot == "random" or (isinstance(start_slot, int) and 0 <= start_slot < day)):
        raise ValueError(f"start_slot: expected 'random' or an int in [0, {day}), got {start_slot!r}")
    keys = list(traces) if traces is not None else held_out_traces(world, seed_list)
    if not keys:
        raise ValueError("traces: need at least one trace")
    for key in keys:
        world.demand.trace(key)  # fail fast on an unknown profile / bad key
    result = EvalResult(label, world.scenario.name, world.scenario.demand.slot_seconds, steps, seed_list, level=level)
    for i, seed in enumerate(seed_list):
        trace = keys[i % len(keys)]
        start = int(np.random.default_rng([seed, 17]).integers(day)) if start_slot == "random" else int(start_slot)
        for name, pol in policies.items():
            result.rollouts.append(rollout(pol, world, seed, trace, start, steps, name, backend))
            if progress is not None:
                m = result.rollouts[-1].metrics
                progress(f"{name} seed={seed} trace={trace}: reward {m['reward']:.1f}, latency {m['latency_mean']:.2f}")
    return result
