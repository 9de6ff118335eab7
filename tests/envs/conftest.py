"""Shared fixtures for the envs tests: preset worlds built once per session, small explicit scenarios."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from envs.presets import get_scenario
from envs.scenario import parse_scenario
from envs.world import World, build_world

_WORLDS: dict[str, World] = {}


@pytest.fixture(scope="session")
def preset_world() -> Callable[[str], World]:
    """``preset_world(name)``: the preset's world, built once per session (LargeCity takes seconds)."""

    def get(name: str) -> World:
        if name not in _WORLDS:
            _WORLDS[name] = build_world(get_scenario(name))
        return _WORLDS[name]

    return get


#: four nodes on a line; cell c reaches node n in 1 + 4|c - n| ms, so cell 0 ranks n0, n1, n2, n3
LINE_MS = [[1.0 + 4.0 * abs(c - n) for n in range(4)] for c in range(4)]

SMALL: dict[str, Any] = {
    "name": "small",
    "seed": 3,
    "nodes": [{"name": f"n{i}", "x_km": float(i), "y_km": 0.0, "cpu": 4.0, "ram_mib": 4096.0} for i in range(4)],
    "services": [{"name": "svc", "cpu": 0.5, "ram_mib": 256.0, "rate": 10.0, "max_replicas": 4}],
    "demand": {"kind": "synthetic", "base_users": 10, "request_rate": 1.0, "slot_seconds": 300},
    "latency": {"model": "mmc", "timeout_ms": 400.0, "rho_max": 0.9, "max_attempts": 3, "network_latency_ms": LINE_MS},
    "episode_slots": 8,
}


@pytest.fixture
def small() -> dict[str, Any]:
    """A fresh copy of a small valid scenario dict (4 nodes on a line, one service allowed everywhere)."""
    return copy.deepcopy(SMALL)


@pytest.fixture(scope="session")
def make_world() -> Callable[[dict[str, Any]], World]:
    """``make_world(scenario_dict)``: validate and build."""
    return lambda data: build_world(parse_scenario(data))
