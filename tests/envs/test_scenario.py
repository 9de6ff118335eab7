"""Scenario files: a bad one fails with one clear ScenarioError naming the field; good ones round-trip."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from envs.placement_env import PlacementEnv
from envs.presets import DATA, PRESETS
from envs.scenario import Scenario, ScenarioError, load_scenario
from envs.world import build_world

Mutate = Callable[[dict[str, Any]], object]


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return path


def fails(path: Path | str) -> str:
    """Load and build ``path`` (and an env from it); both must raise the same one-line ScenarioError."""
    with pytest.raises(ScenarioError) as err:
        build_world(load_scenario(path))
    msg = str(err.value)
    assert "\n" not in msg
    with pytest.raises(ScenarioError) as env_err:
        PlacementEnv({"scenario": str(path)})
    assert str(env_err.value) == msg
    return msg


def _drop(key: str) -> Mutate:
    return lambda d: d["nodes"][1].pop(key)


def _set(*path: str | int, value: Any) -> Mutate:
    def go(d: dict[str, Any]) -> None:
        for p in path[:-1]:
            d = d[p]  # type: ignore[index]
        d[path[-1]] = value  # type: ignore[index]

    return go


CITY = {"n_nodes": 4, "area_km": 2.0, "min_distance_km": 0.3}

BAD: dict[str, tuple[Mutate, str]] = {
    "missing node field": (_drop("cpu"), "scenario.nodes[1].cpu: Field required"),
    "missing name": (lambda d: d.pop("name"), "scenario.name: Field required"),
    "negative node cpu": (_set("nodes", 0, "cpu", value=-2.0), "scenario.nodes[0].cpu: Input should be greater than 0"),
    "zero node ram": (_set("nodes", 2, "ram_mib", value=0), "scenario.nodes[2].ram_mib: Input should be greater than"),
    "negative service ram": (_set("services", 0, "ram_mib", value=-1), "scenario.services[0].ram_mib: Input should be"),
    "pin to unknown node": (
        _set("services", 0, "allowed_nodes", value=["n1", "bs9"]),
        "scenario.services[0].allowed_nodes: unknown node 'bs9' (known: n0, n1, n2, n3)",
    ),
    "pin to no node": (_set("services", 0, "allowed_nodes", value=[]), "scenario.services[0].allowed_nodes: List"),
    "pin twice": (
        _set("services", 0, "allowed_nodes", value=["n0", "n0"]),
        "scenario.services[0].allowed_nodes[1]: duplicate name 'n0'",
    ),
    "duplicate node": (_set("nodes", 3, "name", value="n1"), "scenario.nodes[3].name: duplicate name 'n1'"),
    "duplicate service": (
        lambda d: d["services"].append(copy.deepcopy(d["services"][0])),
        "scenario.services[1].name: duplicate name 'svc'",
    ),
    "unknown top-level field": (_set("nodez", value=[]), "scenario.nodez: Extra inputs are not permitted"),
    "unknown service field": (
        _set("services", 0, "cpus", value=1),
        "scenario.services[0].cpus: Extra inputs are not permitted",
    ),
    "slot_seconds not dividing a day": (
        _set("demand", "slot_seconds", value=7),
        "scenario.demand.slot_seconds: must divide 86400, got 7",
    ),
    "zero slot_seconds": (_set("demand", "slot_seconds", value=0), "scenario.demand.slot_seconds: Input should be"),
    "text slot_seconds": (_set("demand", "slot_seconds", value="5 min"), "scenario.demand.slot_seconds: Input should"),
    "23 hourly factors": (
        _set("demand", "hourly_factors", value=[1.0] * 23),
        "scenario.demand.hourly_factors: need 24 values, got 23",
    ),
    "latency matrix shape": (
        _set("latency", "network_latency_ms", value=[[1.0, 2.0]] * 4),
        "scenario.latency.network_latency_ms: need a 4x4 matrix",
    ),
    "unknown latency model": (_set("latency", "model", value="mm1"), "scenario.latency.model: Input should be"),
    "nodes and city": (_set("city", value=CITY), "scenario.nodes: give exactly one of 'nodes'"),
    "no services": (lambda d: d.pop("services"), "scenario.services: give exactly one of 'services'"),
    "empty node list": (_set("nodes", value=[]), "scenario.nodes: List should have at least 1 item"),
    "empty service list": (_set("services", value=[]), "scenario.services: List should have at least 1 item"),
    "negative seed": (_set("seed", value=-1), "scenario.seed: Input should be greater than or equal to 0"),
    "reversed rate range": (
        lambda d: (d.pop("services"), d.update(service_gen={"n_services": 2, "rate_range": [60, 20]})),
        "scenario.service_gen.rate_range: need 0 < low <= high, got [60.0, 20.0]",
    ),
    "negative speed": (
        _set("demand", "mobility", value={"speed_kmh": [-3, 5]}),
        "scenario.demand.mobility.speed_kmh: need 0 <= low <= high",
    ),
    "no cpu choices": (
        lambda d: (d.pop("nodes"), d.update(city={**CITY, "cpu_choices": []})),
        "scenario.city.cpu_choices: List should have at least 1 item",
    ),
    "impossible demand": (
        _set("demand", "base_users", value=1000),
        "scenario.demand: impossible demand for service 'svc': peak 1000.0 req/s exceeds its largest possible",
    ),
    "impossible demand on the whole cluster": (
        lambda d: (
            d["demand"].update(base_users=300),
            d.update(services=[{**d["services"][0], "name": f"s{i}"} for i in range(3)]),
        ),  # each service alone fits (100 of 144 req/s), all three need 300 / (10 * 0.9) * 0.5 CPU
        "scenario.demand: impossible demand: peak load needs 16.7 CPU cores, the cluster has 16.0",
    ),
    "impossible city": (
        lambda d: (d.pop("nodes"), d.pop("latency"), d.update(city={**CITY, "min_distance_km": 2.0})),
        "scenario.city.min_distance_km: cannot place 4 stations 2.0 km apart in a 2.0 km square",
    ),
    "pin to unknown node of a generated city": (
        lambda d: (
            d.pop("nodes"),
            d.pop("latency"),
            d.update(city=CITY),
            d["services"][0].update(allowed_nodes=["bs1", "n2"]),
        ),
        "scenario.services[0].allowed_nodes: unknown node 'n2' (known: bs1, bs2, bs3, bs4)",
    ),
}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_scenario_file_fails_with_one_message_naming_the_field(tmp_path, small, case, suffix):
    mutate, expected = BAD[case]
    mutate(small)
    msg = fails(write(tmp_path / f"bad{suffix}", small))
    assert msg.startswith(expected), msg


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "name: x\nnodes: [\n", r"scenario file .*bad\.yaml: not valid YAML: "),
        ("bad.json", '{"name": "x",}', r"scenario file .*bad\.json: not valid JSON: "),
        ("list.yaml", "- name: x\n", r"scenario: expected a mapping, got list$"),
        ("empty.yml", "", r"scenario: expected a mapping, got NoneType$"),
    ],
)
def test_unparseable_files(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert re.match(expected, fails(path))


def test_missing_and_binary_files(tmp_path):
    assert fails(tmp_path / "none.yaml").endswith("none.yaml: No such file or directory")
    (tmp_path / "bin.yaml").write_bytes(b"name: \xff\xfe\n")
    assert fails(tmp_path / "bin.yaml").endswith("bin.yaml: not UTF-8 text")


def profile_scenario(small: dict[str, Any], profiles: dict[str, str], default: str) -> dict[str, Any]:
    small["demand"] = {"kind": "profile", "slot_seconds": 3600, "profiles": profiles, "default_profile": default}
    return small


def write_profile(path: Path, rows: list[list[float]]) -> None:
    path.write_text("slot,n0,n1,n2,n3\n" + "".join(",".join(map(str, [i, *r])) + "\n" for i, r in enumerate(rows)))


@pytest.mark.parametrize(
    ("rows", "default", "expected"),
    [
        ([[1, 2, 3, 4]] * 24, "C", "scenario.demand.default_profile: unknown profile 'C' (known: A)"),
        ([[1, 2, 3, 4]] * 23, "A", "scenario.demand.profiles.A: a.csv has shape (23, 5), expected (24, 5)"),
        ([[1, 2, 3]] * 24, "A", "scenario.demand.profiles.A: a.csv has shape (24, 4), expected (24, 5)"),
        ([[1, -2, 3, 4]] * 24, "A", "scenario.demand.profiles.A: a.csv has negative or non-finite user counts"),
        ([[1, "nan", 3, 4]] * 24, "A", "scenario.demand.profiles.A: a.csv has negative or non-finite user counts"),
        ([[1, "x", 3, 4]] * 24, "A", "scenario.demand.profiles.A: cannot read "),
        ([[1, 2, 3, 4]] * 24 + [[300, 300, 300, 300]], "A", "scenario.demand.profiles.A: a.csv has shape (25, 5)"),
    ],
)
def test_bad_profiles(tmp_path, small, rows, default, expected):
    write_profile(tmp_path / "a.csv", rows)
    path = write(tmp_path / "s.yaml", profile_scenario(small, {"A": "a.csv"}, default))
    assert fails(path).startswith(expected)


def test_profile_paths_resolve_against_the_scenario_file(tmp_path, small):
    (tmp_path / "data").mkdir()
    write_profile(tmp_path / "data" / "a.csv", [[1, 2, 3, float(h)] for h in range(24)])
    path = write(tmp_path / "s.json", profile_scenario(small, {"A": "data/a.csv"}, "A"))
    world = build_world(load_scenario(path))
    assert world.demand.trace("A")[:, 3].tolist() == list(range(24))
    assert fails(write(tmp_path / "missing.yaml", profile_scenario(small, {"A": "a.csv"}, "A"))).startswith(
        "scenario.demand.profiles.A: cannot read "
    )


def test_yaml_and_json_give_the_same_scenario(tmp_path, small):
    a = load_scenario(write(tmp_path / "s.yaml", small))
    b = load_scenario(write(tmp_path / "s.json", small))
    assert isinstance(a, Scenario) and a == b
    assert a.base_dir == str(tmp_path.resolve())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_round_trip_through_a_yaml_file(tmp_path, preset):
    sc = PRESETS[preset]()
    back = load_scenario(write(tmp_path / "p.yaml", sc.model_dump(mode="json")))
    assert back == sc
    if sc.demand.kind == "profile":
        assert back.base_dir == str(DATA)


@pytest.mark.parametrize(("users", "ok"), [(144, True), (145, False)])
def test_peak_demand_is_at_most_every_user_active(make_world, small, users, ok):
    # capacity: 4 nodes x 4 replicas x 10 req/s x rho_max 0.9 = 144 req/s; at most base_users are active at once
    small["demand"]["base_users"] = users
    if ok:
        assert make_world(small).n_slots == 4
    else:
        with pytest.raises(ScenarioError, match=r"peak 145\.0 req/s exceeds its largest possible capacity 144\.0"):
            make_world(small)
