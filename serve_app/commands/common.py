"""Helpers shared by the subcommands: progress lines, resolving a scenario argument, choosing a demand trace."""

from __future__ import annotations

from pathlib import Path

from envs.presets import PRESETS, get_scenario
from envs.scenario import Scenario, ScenarioError, load_scenario
from envs.world import World, build_world

SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")
SCENARIO_HELP = f"a preset ({', '.join(PRESETS)}) or a scenario file (.yaml/.yml/.json)"


def progress(message: str) -> None:
    """Announce a step that may take a while (stdout, flushed at once; stderr is kept for the error line)."""
    print(f"{message} ...", flush=True)


def resolve(arg: str) -> Scenario:
    """A preset name or a path to a scenario file."""
    if arg in PRESETS:
        return get_scenario(arg)
    if arg.endswith(SCENARIO_SUFFIXES) or Path(arg).exists():
        return load_scenario(arg)
    return get_scenario(arg)  # raises: unknown preset, listing the known ones


def load_world(arg: str) -> World:
    scenario = resolve(arg)
    progress(f"building world {scenario.name}")
    return build_world(scenario)


def trace_key(world: World, key: str | None) -> int | str:
    """The ``--trace`` option as a trace key: an int seed (synthetic demand) or a profile name (recorded demand)."""
    if key is None:
        return world.demand.default_key
    if world.scenario.demand.kind == "profile":
        world.demand.trace(key)  # raises with the known profile names
        return key
    try:
        return int(key)
    except ValueError:
        raise ScenarioError(f"--trace: a synthetic demand trace is an integer seed, got {key!r}") from None
