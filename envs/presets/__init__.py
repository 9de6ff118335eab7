"""Built-in scenarios by name: the upstream twin and two generated cities."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from envs.scenario import Scenario, ScenarioError, parse_scenario

DATA = Path(__file__).parent / "data"


def testapp_4bs() -> Scenario:
    """Twin of the upstream experiment: 4 stations on a ring, one test-app deployment pinned per node.

    Users of station ``i`` call ``bs_i`` first and fail over to ``bs_{i+1}``, ``bs_{i+2}``, ... (the
    upstream client's host list); the ring latencies below encode that order (assumed figures: 2 ms
    local, +5 ms per ring hop). Demand is the exact per-10-s user counts of upstream profiles A and B.
    """
    hop = [2.0, 7.0, 12.0, 17.0]
    return parse_scenario(
        {
            "name": "testapp-4bs",
            "nodes": [
                {"name": f"bs{i + 1}", "x_km": x, "y_km": y, "cpu": 2.0, "ram_mib": 4096.0}
                for i, (x, y) in enumerate([(0, 0), (1, 0), (1, 1), (0, 1)])
            ],
            "services": [
                # rate: a replica absorbs 100 load units per burst at 3.5 units/request -> 28.6 requests/10 s
                {"name": "testapp", "cpu": 0.2, "ram_mib": 256.0, "rate": 100 / 3.5 / 10, "max_replicas": 4}
            ],
            "demand": {
                "kind": "profile",
                "slot_seconds": 10,
                "request_rate": 0.1,
                "profiles": {"A": "profile_a_24h.csv", "B": "profile_b_24h.csv"},
                "default_profile": "A",
            },
            "latency": {
                "model": "throttling",
                "timeout_ms": 400.0,
                "network_latency_ms": [[hop[(n - c) % 4] for n in range(4)] for c in range(4)],
            },
            "reward": {"replica_cost": 0.1, "change_cost": 0.0, "sla_penalty": 0.0, "infeasible_penalty": 1.0},
            "episode_slots": 360,
        },
        base_dir=DATA,
    )


def _city(name: str, nodes: int, area: float, services: int, per_service: int, users: int) -> Scenario:
    return parse_scenario(
        {
            "name": name,
            "seed": 7,
            "city": {
                "n_nodes": nodes,
                "area_km": area,
                "min_distance_km": 0.6,
                "cpu_choices": [2.0, 4.0, 6.0],
                "ram_choices_mib": [4096.0, 8192.0],
            },
            "service_gen": {
                "n_services": services,
                "nodes_per_service": per_service,
                "max_replicas": 3,
                "rate_range": [40.0, 120.0],
                "cpu_choices": [0.25, 0.5, 1.0],
                "ram_choices_mib": [256.0, 512.0],
            },
            "demand": {"kind": "synthetic", "slot_seconds": 300, "base_users": users, "request_rate": 2.0},
            "latency": {"model": "mmc", "local_ms": 1.0, "per_hop_ms": 4.0, "propagation_ms_per_km": 0.5},
            "reward": {"replica_cost": 0.05, "change_cost": 0.02, "sla_penalty": 1.0, "infeasible_penalty": 1.0},
            "episode_slots": 48,
        }
    )


def reference_city() -> Scenario:
    """20 stations, 50 services (each allowed on its 5 nearest nodes), 600 moving users, 5-min slots."""
    return _city("reference-city", nodes=20, area=5.0, services=50, per_service=5, users=600)


def large_city() -> Scenario:
    """100 stations, 300 services (each on 8 nodes), 5,000 moving users."""
    return _city("large-city", nodes=100, area=12.0, services=300, per_service=8, users=5000)


PRESETS: dict[str, Callable[[], Scenario]] = {
    "testapp-4bs": testapp_4bs,
    "reference-city": reference_city,
    "large-city": large_city,
}


def get_scenario(name: str) -> Scenario:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ScenarioError(f"unknown scenario preset {name!r} (known: {', '.join(PRESETS)})") from None
