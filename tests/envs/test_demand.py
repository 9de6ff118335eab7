"""Demand: the shipped upstream profiles, and synthetic demand (diurnal curve, determinism, mobility)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from envs.presets import DATA, get_scenario
from envs.scenario import UPSTREAM_HOURLY_FACTORS, ScenarioError, parse_scenario
from envs.world import build_world

SHARED = Path("/work/shared/upstream-testapp-profiles")
PROFILE_MEANS = {"A": [18.8, 16.5, 17.4, 13.6], "B": [12.3, 19.3, 20.3, 14.1]}


def hourly_totals(trace: np.ndarray) -> np.ndarray:
    return trace.reshape(24, -1, trace.shape[1]).sum((1, 2))


def corr_with_upstream_curve(trace: np.ndarray) -> float:
    return float(np.corrcoef(hourly_totals(trace), UPSTREAM_HOURLY_FACTORS)[0, 1])


@pytest.mark.parametrize("key", ["A", "B"])
def test_shipped_profiles_have_the_documented_statistics(preset_world, key):
    trace = preset_world("testapp-4bs").demand.trace(key)
    assert trace.shape == (8640, 4)  # one row per 10-s slot of a day, one column per station
    np.testing.assert_allclose(trace.mean(0), PROFILE_MEANS[key], atol=0.05)
    assert trace.min() == 0 and trace.max() <= 47
    assert (trace == np.round(trace)).all()
    assert corr_with_upstream_curve(trace) > 0.99


def test_profiles_peak_at_47_users():
    assert max(np.loadtxt(DATA / f"profile_{k}_24h.csv", delimiter=",", skiprows=1)[:, 1:].max() for k in "ab") == 47


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared copy of the upstream profiles on this machine")
@pytest.mark.parametrize("name", ["profile_a_24h.csv", "profile_b_24h.csv"])
def test_shipped_profiles_are_byte_identical_to_the_shared_originals(name):
    assert (DATA / name).read_bytes() == (SHARED / name).read_bytes()


def test_profiles_carry_their_attribution():
    notice = (DATA / "NOTICE.txt").read_text()
    assert "adeptvin1/lwmecps-testapp" in notice and "Apache License 2.0" in notice
    for name in ("profile_a_24h.csv", "profile_b_24h.csv"):
        assert name in notice or "profile_{a,b}" in notice


def test_unknown_profile_key_is_a_clear_error(preset_world):
    with pytest.raises(ScenarioError, match=r"unknown profile 'C' \(known: A, B\)"):
        preset_world("testapp-4bs").demand.trace("C")


@pytest.fixture(scope="module")
def city():
    return build_world(get_scenario("reference-city"))


def with_demand(**changes) -> dict:
    data = get_scenario("reference-city").model_dump(mode="json")
    data["demand"].update(changes)
    return data


def test_synthetic_demand_follows_the_diurnal_curve(city):
    spec = city.scenario.demand
    for seed in (0, 1):
        trace = city.demand.trace(seed)
        assert trace.shape == (86400 // spec.slot_seconds, city.n_nodes)
        assert corr_with_upstream_curve(trace) > 0.9
        assert (trace >= 0).all() and (trace == np.round(trace)).all()
        assert trace.sum(1).max() <= spec.base_users


def test_synthetic_demand_is_deterministic_per_scenario_and_trace_seed(city):
    again = build_world(get_scenario("reference-city"))
    assert np.array_equal(city.demand.trace(3), again.demand.trace(3))
    assert not np.array_equal(city.demand.trace(3), city.demand.trace(4))
    reseeded = get_scenario("reference-city").model_dump(mode="json") | {"seed": 8}
    other = build_world(parse_scenario(reseeded))
    assert not np.array_equal(city.demand.trace(3), other.demand.trace(3))


@pytest.mark.parametrize("key", [-1, "3", 2.0])
def test_synthetic_trace_keys_are_non_negative_ints(city, key):
    with pytest.raises(ScenarioError, match="a synthetic trace key must be an int seed >= 0"):
        city.demand.trace(key)


def day_night_shift(trace: np.ndarray) -> float:
    """Total-variation distance between the users' spread over cells at night (0-6 h) and by day (10-16 h)."""
    per_hour = trace.reshape(24, -1, trace.shape[1]).sum(1)
    night, day = per_hour[0:6].sum(0), per_hour[10:16].sum(0)
    return float(0.5 * np.abs(night / night.sum() - day / day.sum()).sum())


def test_users_move_between_cells_over_the_day(city):
    static = build_world(parse_scenario(with_demand(mobility={"speed_kmh": [0.0, 0.0]})))
    for seed in (0, 1):
        moving, still = day_night_shift(city.demand.trace(seed)), day_night_shift(static.demand.trace(seed))
        assert moving > 0.08
        assert moving > 5 * still  # without movement only the noise reshuffles the cells


def test_hour_factor_is_piecewise_constant_per_hour(city):
    factor = city.demand.hour_factor()
    per_hour = 3600 // city.scenario.demand.slot_seconds
    assert factor.tolist() == np.repeat(UPSTREAM_HOURLY_FACTORS, per_hour).tolist()
