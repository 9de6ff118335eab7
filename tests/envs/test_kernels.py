"""The compiled (numba) path and the numpy reference path of the slot model and the dynamics agree."""

from __future__ import annotations

import numpy as np
import pytest

from envs import kernels
from envs.dynamics import Dynamics
from envs.sim import SlotModel

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba not installed or disabled")


def _placements(rng: np.random.Generator, world, n: int) -> np.ndarray:
    """Half sparse (spill and unserved load under M/M/c), half dense."""
    full = rng.integers(0, world.slot_max + 1, size=(n, world.n_slots))
    sparse = full * (rng.random((n, world.n_slots)) < 0.15)
    return np.where(np.arange(n)[:, None] % 2 == 0, sparse, full).astype(np.int64)


@pytest.mark.parametrize("preset", ["testapp-4bs", "reference-city"])
def test_slot_model_compiled_equals_numpy(preset: str, preset_world) -> None:
    world = preset_world(preset)
    fast, ref = SlotModel(world, compiled=True), SlotModel(world, compiled=False)
    rng = np.random.default_rng(1)
    trace = world.demand.trace(world.demand.default_key)
    n = 6
    prev = _placements(rng, world, n)
    spilled = 0.0
    for slot in range(8):  # consecutive slots: the throttling counters evolve
        place = _placements(rng, world, n)
        users = trace[rng.integers(0, len(trace), n)] * (3.0 if slot % 2 else 1.0)  # some overload
        prev_arg = None if slot == 3 else prev  # one stateless what-if in between
        a, b = fast.evaluate(place, users, prev_arg), ref.evaluate(place, users, prev_arg)
        for key, value in vars(b).items():
            np.testing.assert_allclose(getattr(a, key), value, rtol=1e-9, atol=1e-12, err_msg=key)
        if not fast.mmc:
            np.testing.assert_allclose(fast.cpu, ref.cpu, rtol=1e-12)
            np.testing.assert_allclose(fast.ram, ref.ram, rtol=1e-12)
        spilled += float(b.unserved.sum())
        prev = place
    if world.scenario.latency.model == "mmc":
        assert spilled > 0  # the spill loop and the unserved share were exercised


@pytest.mark.parametrize("preset", ["testapp-4bs", "reference-city"])
def test_dynamics_compiled_equals_numpy(preset: str, preset_world) -> None:
    world = preset_world(preset)
    fast, ref = Dynamics(world, compiled=True), Dynamics(world, compiled=False)
    rng = np.random.default_rng(2)
    prev = np.broadcast_to(fast.initial_placement(), (5, world.n_slots))
    action = rng.integers(-1, fast.nvec + 1, size=(5, world.n_slots))
    (pa, ra), (pb, rb) = fast.repair(prev, action), ref.repair(prev, action)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(ra, rb)
    assert rb.sum() > 0 or preset == "testapp-4bs"  # some increases rejected (TestApp nodes never overflow)
    trace = world.demand.trace(world.demand.default_key)
    users, slot = trace[[0, 5, 9, 100, 200]], np.array([0, 5, 9, 100, 200])
    latency = rng.uniform(0, 1000, size=(5, world.n_services))
    oa, ob = fast.observe(pa, users, slot, latency), ref.observe(pb, users, slot, latency)
    for key in ("observations", "action_mask"):
        assert oa[key].dtype == ob[key].dtype == np.float32
        np.testing.assert_array_equal(oa[key], ob[key], err_msg=key)


@pytest.mark.parametrize("preset", ["reference-city"])
def test_synthetic_trace_compiled_equals_numpy(preset: str, preset_world) -> None:
    demand = preset_world(preset).demand
    fast, ref = demand._synthetic(4, compiled=True), demand._synthetic(4, compiled=False)
    assert fast.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(fast, ref)
    assert ref.sum() > 0


@pytest.mark.parametrize("compiled", [True, False])
def test_rows_of_a_batch_are_independent(compiled: bool, preset_world) -> None:
    world = preset_world("reference-city")
    model = SlotModel(world, compiled=compiled)
    rng = np.random.default_rng(5)
    trace = world.demand.trace(world.demand.default_key)
    place = _placements(rng, world, 4)
    place[1] = Dynamics(world).initial_placement()  # a row with little spill beside sparse ones
    users = trace[[10, 100, 150, 250]] * 2.0
    batch = model.evaluate(place, users)
    assert batch.unserved[0] > 0  # the sparse rows spill
    for i in range(4):
        alone = model.evaluate(place[i : i + 1], users[i : i + 1])
        for key, value in vars(alone).items():
            np.testing.assert_array_equal(getattr(batch, key)[i], value[0], err_msg=f"row {i} {key}")
