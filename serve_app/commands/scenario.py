"""``lwmecps scenario validate <file>`` and ``lwmecps scenario show <preset>``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from envs.presets import get_scenario
from envs.scenario import Scenario
from envs.world import World, peak_users
from serve_app.commands.common import SCENARIO_HELP, load_world


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenario", help="check or print scenarios")
    inner = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    v = inner.add_parser("validate", help="load and build a scenario, print a summary")
    v.add_argument("scenario", help=SCENARIO_HELP)
    v.set_defaults(func=validate)
    s = inner.add_parser("show", help="print a preset as YAML (to copy and edit)")
    s.add_argument("preset", help="a preset name")
    s.set_defaults(func=show)


def validate(args: argparse.Namespace) -> int:
    world = load_world(args.scenario)
    print(summary(world))
    return 0


def show(args: argparse.Namespace) -> int:
    print(dump_yaml(get_scenario(args.preset)), end="")
    return 0


def dump_yaml(scenario: Scenario) -> str:
    """The scenario as YAML that :func:`envs.scenario.load_scenario` reads back to the same world.

    Recorded profile paths are written absolute and ``base_dir`` is left out, so an edited copy may point
    its own profiles at files beside it.
    """
    data: dict[str, Any] = scenario.model_dump(mode="json", exclude_none=True, exclude={"base_dir"})
    root = Path(scenario.base_dir or ".")
    profiles = data["demand"].get("profiles", {})
    for name, rel in profiles.items():
        profiles[name] = str((root / rel).resolve())
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)


def _action_space(world: World) -> str:
    nvec = world.slot_max + 1
    log10 = float(np.log10(nvec.astype(np.float64)).sum())
    joint = f"{math.prod(int(n) for n in nvec):,}" if log10 < 9 else f"~10^{log10:.0f}"
    return f"MultiDiscrete over {world.n_slots} deployment slots (max {int(nvec.max()) - 1} replicas; {joint} actions)"


def _demand(world: World) -> str:
    spec = world.scenario.demand
    slots = f"{world.demand.slots_per_day} slots of {spec.slot_seconds} s"
    if spec.kind == "profile":
        peaks = ", ".join(f"{k} {int(world.demand.trace(k).sum(1).max())}" for k in spec.profiles)
        return f"recorded profiles ({slots}), peak users per profile: {peaks}"
    peak = int(world.demand.trace(world.demand.default_key).sum(1).max())
    return (
        f"synthetic, {spec.base_users:,} moving users ({slots}), peak {peak:,} active users in trace 0 "
        f"(bound {peak_users(world):,.0f})"
    )


def summary(world: World) -> str:
    """One paragraph describing a built world."""
    sc = world.scenario
    lat = sc.latency
    plural = "" if world.n_services == 1 else "s"
    return (
        f"Scenario {sc.name!r} (seed {sc.seed}) is valid: {world.n_nodes} nodes "
        f"({world.node_cpu.sum():g} CPU cores, {world.node_ram.sum() / 1024:g} GiB RAM), "
        f"{world.n_services} service{plural}; action space {_action_space(world)}; demand {_demand(world)}; "
        f"latency model {lat.model} with a {lat.timeout_ms:g} ms timeout; episodes of {sc.episode_slots} slots."
    )
