"""Routing and fail-over of one slot, as documented in envs/sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from envs.sim import SlotModel


def mm1_ms(lam: float, mu: float = 10.0) -> float:
    return 1000.0 / (mu - lam)


def serve(model: SlotModel, replicas: list[int], users: list[float]):
    return model.evaluate(np.array([replicas], dtype=np.int64), np.array([users], dtype=np.float64))


@pytest.fixture
def line(make_world, small):
    """4 nodes on a line (cell 0 ranks n0 1 ms, n1 5 ms, n2 9 ms, n3 13 ms), one service of rate 10/s, rho_max 0.9."""
    return SlotModel(make_world(small))


def test_nearest_hosting_slot_serves_first(line):
    res = serve(line, [1, 1, 1, 1], [3, 0, 0, 0])
    assert res.slot_load[0].tolist() == [3.0, 0.0, 0.0, 0.0]
    assert res.latency_ms[0] == pytest.approx(1.0 + mm1_ms(3))
    assert res.unserved[0] == 0.0
    res = serve(line, [1, 1, 1, 1], [0, 0, 0, 2])  # cell 3 is nearest to n3
    assert res.slot_load[0].tolist() == [0.0, 0.0, 0.0, 2.0]


def test_slot_without_replicas_is_skipped(line):
    res = serve(line, [0, 1, 1, 1], [3, 0, 0, 0])
    assert res.slot_load[0].tolist() == [0.0, 3.0, 0.0, 0.0]
    assert res.latency_ms[0] == pytest.approx(5.0 + mm1_ms(3))
    res = serve(line, [0, 0, 2, 0], [3, 0, 0, 0])  # M/M/2 at n2: W = 1 / (mu (1 - rho^2))
    assert res.latency_ms[0] == pytest.approx(9.0 + 1000 / (10 * (1 - 0.15**2)))


def test_saturation_spills_to_the_next_hosting_slot(line):
    # n0 admits rho_max * 1 * 10 = 9 req/s; the other 6 go on to n1 (n2 has no replicas, so n3 is not needed)
    res = serve(line, [1, 1, 0, 1], [15, 0, 0, 0])
    np.testing.assert_allclose(res.slot_load[0], [9.0, 6.0, 0.0, 0.0])
    assert res.latency_ms[0] == pytest.approx((9 * (1 + mm1_ms(9)) + 6 * (5 + mm1_ms(6))) / 15)
    assert res.unserved[0] == 0.0
    # M/M/1 sojourn tail: P(T > t) = exp(-(mu - lam) t), with the budget net of the network latency
    viol = (9 * np.exp(-(10 - 9) * 0.399) + 6 * np.exp(-(10 - 6) * 0.395)) / 15
    assert res.violations[0] == pytest.approx(viol)


def test_refused_load_moves_on_proportionally_per_path(make_world, small):
    small["latency"]["network_latency_ms"][1] = [1.0, 9.0, 5.0, 13.0]  # cell 1 ranks n0, n2, n1, n3
    model = SlotModel(make_world(small))
    res = serve(model, [1, 1, 1, 1], [10, 5, 0, 0])
    # n0 admits 9 of the 15 offered: 60 % of each path; cell 0's 4 refused go to n1, cell 1's 2 to n2
    np.testing.assert_allclose(res.slot_load[0], [9.0, 4.0, 2.0, 0.0])
    want = (6 * 1 + 3 * 1 + 9 * mm1_ms(9) + 4 * (5 + mm1_ms(4)) + 2 * (5 + mm1_ms(2))) / 15
    assert res.latency_ms[0] == pytest.approx(want)


@pytest.mark.parametrize(("attempts", "served"), [(3, [9.0, 9.0, 0.0, 9.0]), (2, [9.0, 9.0, 0.0, 0.0])])
def test_every_tried_host_full_means_unserved_at_timeout(make_world, small, attempts, served):
    small["latency"]["max_attempts"] = attempts
    model = SlotModel(make_world(small))
    res = serve(model, [1, 1, 0, 1], [30, 0, 0, 0])
    np.testing.assert_allclose(res.slot_load[0], served)
    left = 30 - sum(served)
    assert res.unserved[0] == pytest.approx(left / 30)
    lat_served = 9 * (1 + mm1_ms(9)) + 9 * (5 + mm1_ms(9)) + (9 * (13 + mm1_ms(9)) if attempts == 3 else 0)
    assert res.latency_ms[0] == pytest.approx((lat_served + left * 400.0) / 30)
    assert res.violations[0] > res.unserved[0]  # the unserved plus the slow served ones


@pytest.mark.parametrize("model_name", ["mmc", "throttling"])
def test_no_host_anywhere_is_counted_not_dropped(make_world, small, model_name):
    small["latency"]["model"] = model_name
    model = SlotModel(make_world(small))
    res = serve(model, [0, 0, 0, 0], [2, 1, 0, 4])
    assert res.unserved[0] == 1.0 and res.violations[0] == 1.0
    assert res.latency_ms[0] == 400.0
    assert not res.slot_load.any()
    assert res.requests[0] == 7 * 300  # 7 users x 1 req/s x 300-s slot, all counted
    assert res.service_latency_ms[0].tolist() == [400.0]


def test_no_demand_means_no_latency(line):
    res = serve(line, [1, 0, 0, 0], [0, 0, 0, 0])
    assert (res.latency_ms[0], res.violations[0], res.unserved[0], res.requests[0]) == (0.0, 0.0, 0.0, 0.0)


def test_every_request_is_served_or_counted_unserved(line):
    rng = np.random.default_rng(0)
    replicas = rng.integers(0, 5, size=(64, 4))
    users = rng.uniform(0, 20, size=(64, 4))
    res = line.evaluate(replicas, users)
    total = users.sum(1)
    np.testing.assert_allclose(res.slot_load.sum(1) + res.unserved * total, total)
    assert (res.slot_load <= replicas * 10 * 0.9 + 1e-9).all()  # nobody above rho_max
    assert ((res.violations >= res.unserved) & (res.violations <= 1)).all()
    # a batch is the rows evaluated one by one
    row = line.evaluate(replicas[5:6], users[5:6])
    assert row.latency_ms[0] == pytest.approx(res.latency_ms[5])


def test_testapp_ring_failover_order(preset_world):
    world = preset_world("testapp-4bs")
    for c in range(4):
        assert world.slot_node[world.order[0, c]].tolist() == [(c + i) % 4 for i in range(4)]


def test_testapp_users_walk_the_ring_to_the_first_hosting_station(preset_world):
    world = preset_world("testapp-4bs")
    model = SlotModel(world)
    hop = [2.0, 7.0, 12.0, 17.0]
    for c in range(4):
        users = np.zeros(4)
        users[c] = 10.0  # 10 users x 0.1 req/s x 10 s = 10 requests: far below the throttling threshold
        for first in range(1, 4):
            replicas = np.zeros(4, dtype=np.int64)
            replicas[[(c + i) % 4 for i in range(first, 4)]] = 1  # bs_{c+first} .. bs_{c+3} host, bs_c .. not
            model.reset_state(1)
            res = serve(model, replicas.tolist(), users.tolist())
            assert res.slot_load[0, (c + first) % 4] == pytest.approx(1.0)
            assert res.latency_ms[0] == pytest.approx(hop[first])


def test_throttling_never_refuses(preset_world):
    model = SlotModel(preset_world("testapp-4bs"))
    model.reset_state(1)
    res = serve(model, [1, 1, 1, 1], [400, 0, 0, 0])  # 400 requests on bs1's single replica
    assert res.slot_load[0].tolist() == [40.0, 0.0, 0.0, 0.0]
    assert res.unserved[0] == 0.0
    assert 0.5 < res.violations[0] < 1.0  # the requests past the caps sleep 475 ms > 400 ms


def test_equal_latency_ties_follow_the_scenario_order(make_world, small):
    small["latency"]["network_latency_ms"][0] = [1.0, 5.0, 5.0, 13.0]  # n1 and n2 tie for cell 0
    small["services"][0]["allowed_nodes"] = ["n0", "n2", "n1", "n3"]  # slots: n0, n2, n1, n3
    model = SlotModel(make_world(small))
    res = serve(model, [0, 1, 1, 1], [3, 0, 0, 0])
    assert res.slot_load[0].tolist() == [0.0, 3.0, 0.0, 0.0]  # n2, listed before n1


@pytest.mark.parametrize("compiled", [True, False])
def test_throttling_counters_follow_pods_when_scaling(preset_world, compiled):
    """Scale-up adds idle pods (mean load drops by old/new); scale-down removes the newest, idle pods first,
    so the load stays with the survivors: 1 -> 2 -> 1 replicas must not launder the accumulated load."""
    model = SlotModel(preset_world("testapp-4bs"), compiled=compiled)
    model.reset_state(1)
    one, two = np.array([[1, 0, 0, 0]]), np.array([[2, 0, 0, 0]])
    users = np.array([[40.0, 0.0, 0.0, 0.0]])  # 40 requests per burst on bs1: +140 units per slot
    for _ in range(3):
        model.evaluate(one, users, previous=one)
    loaded = model.cpu[0, 0]
    assert loaded == pytest.approx(200.0)  # 0 -> 140 -> 180 -> 200 (capped), decay 100 per burst between
    model.evaluate(two, np.zeros((1, 4)), previous=one)  # decay to 100, split over 2 pods: mean 50, no burst
    assert model.cpu[0, 0] == pytest.approx(50.0)
    model.evaluate(one, np.zeros((1, 4)), previous=two)  # decay to 0 ... the idle pod goes, mean doubles
    assert model.cpu[0, 0] == pytest.approx(0.0)
    for _ in range(3):
        model.evaluate(one, users, previous=one)
    model.evaluate(two, users, previous=one)  # decay 200 -> 100, split: mean 50, burst of 20 per pod: 120
    assert model.cpu[0, 0] == pytest.approx(120.0)
    model.evaluate(one, np.zeros((1, 4)), previous=two)  # decay to 20 per pod; both pods' load on the survivor
    assert model.cpu[0, 0] == pytest.approx(40.0)
