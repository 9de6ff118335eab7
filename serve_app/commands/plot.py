"""``lwmecps plot city`` and ``lwmecps plot demand``: PNG pictures of a scenario."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from envs.placement_env import PlacementEnv
from envs.world import World
from serve_app.commands import UsageError
from serve_app.commands.common import SCENARIO_HELP, load_world, progress, trace_key

PLACEMENT_HELP = "'initial' (the env's starting placement) or a baseline policy: static-1..4, greedy-latency, ..."
WARMUP = 12  # slots a baseline policy runs before the drawn slot


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw a scenario to PNG")
    inner = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    city = inner.add_parser("city", help="stations, users per cell at one slot, and a placement")
    city.add_argument("--scenario", required=True, help=SCENARIO_HELP)
    when = city.add_mutually_exclusive_group()
    when.add_argument("--slot", type=int, help="slot of the day (default: the slot with the most users)")
    when.add_argument("--hour", type=float, help="hour of the day, 0 <= H < 24")
    city.add_argument("--trace", help="demand trace: an integer seed (synthetic) or a profile name (recorded)")
    city.add_argument("--placement", default="initial", help=PLACEMENT_HELP)
    city.add_argument("--out", default="city.png", help="PNG file to write")
    city.set_defaults(func=plot_city)
    demand = inner.add_parser("demand", help="users per cell over the day")
    demand.add_argument("--scenario", required=True, help=SCENARIO_HELP)
    demand.add_argument("--trace", help="one trace only (default: every recorded profile, or synthetic trace 0)")
    demand.add_argument("--out", default="demand.png", help="PNG file to write")
    demand.set_defaults(func=plot_demand)


def pick_slot(world: World, trace: np.ndarray, slot: int | None, hour: float | None) -> int:
    """``--slot`` or ``--hour`` as a slot index; by default the slot with the most active users."""
    n = world.demand.slots_per_day
    if slot is not None:
        if not 0 <= slot < n:
            raise UsageError(f"--slot: must be in 0..{n - 1} for {world.scenario.name}, got {slot}")
        return slot
    if hour is not None:
        if not 0 <= hour < 24:
            raise UsageError(f"--hour: must be in [0, 24), got {hour:g}")
        return int(hour * 3600 // world.scenario.demand.slot_seconds)
    return int(trace.sum(1).argmax())


@dataclass
class Served:
    """The placement in effect during one slot and what serving the slot under it measured."""

    placement: np.ndarray
    latency_ms: float
    violations: float


def serve(world: World, name: str, key: int | str, slot: int) -> Served:
    """Run the env with placement ``name`` up to ``slot`` of trace ``key`` and serve that slot.

    ``initial`` keeps the env's starting placement; a baseline policy name (``static-1``, ``greedy-latency``,
    ...) runs that policy for :data:`WARMUP` slots first, so the drawing shows it in its stride.
    """
    from policies.base import Context
    from policies.heuristics import baselines

    known = ["initial", *baselines()]
    if name not in known:
        raise UsageError(f"--placement: unknown placement {name!r} (known: {', '.join(known)})")
    policy = None if name == "initial" else baselines((name,))[name]
    env = PlacementEnv(world=world, traces=[key])
    warmup = 0 if policy is None else WARMUP
    env.reset(seed=0, options={"trace": key, "start_slot": (slot - warmup) % world.demand.slots_per_day})
    if policy is not None:
        policy.reset(world, seed=0)
        progress(f"running {name} for {warmup} slots up to slot {slot}")
    info: dict = {}
    for _ in range(warmup + 1):
        action = env.backend.snapshot().placement if policy is None else policy.act(Context.from_env(env))
        info = env.step(action)[-1]
    return Served(np.asarray(info["placement"]), float(info["latency_ms"]), float(info["violations"]))


def _clock(world: World, slot: int) -> str:
    seconds = slot * world.scenario.demand.slot_seconds
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def plot_city(args: argparse.Namespace) -> int:
    from serve_app.plots_city import draw_city

    world = load_world(args.scenario)
    key = trace_key(world, args.trace)
    trace = world.demand.trace(key)
    slot = pick_slot(world, trace, args.slot, args.hour)
    served = serve(world, args.placement, key, slot)
    users = trace[slot]
    title = (
        f"{world.scenario.name} — slot {slot} ({_clock(world, slot)}), trace {key}: {users.sum():,.0f} active users\n"
        f"placement {args.placement}: {int(served.placement.sum()):,} replicas, mean latency "
        f"{served.latency_ms:.1f} ms, {100 * served.violations:.1f} % of requests over the timeout"
    )
    progress(f"drawing {args.out}")
    draw_city(world, users, served.placement, title).savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


def plot_demand(args: argparse.Namespace) -> int:
    from serve_app.plots_city import draw_demand

    world = load_world(args.scenario)
    spec = world.scenario.demand
    if args.trace is not None:
        keys = [trace_key(world, args.trace)]
    else:
        keys = list(spec.profiles) if spec.kind == "profile" else [world.demand.default_key]
    label = "profile" if spec.kind == "profile" else "trace"
    traces = {f"{label} {k}": world.demand.trace(k) for k in keys}
    progress(f"drawing {args.out}")
    draw_demand(world, traces).savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0
