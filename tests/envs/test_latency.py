"""Latency models: M/M/c against closed forms and a queue simulation; throttling against the upstream server."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from scipy.integrate import quad

from envs import latency as lat
from envs.sim import SlotModel


def arr(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float64)


# -- M/M/c ------------------------------------------------------------------------------------------------


def erlang_c_textbook(c: int, a: float) -> float:
    """``C(c, a) = (a^c/c! * c/(c-a)) / (sum_{k<c} a^k/k! + a^c/c! * c/(c-a))``."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def test_mm1_mean_sojourn_is_one_over_mu_minus_lambda():
    lam, mu = arr(1.0, 3.0, 9.5), arr(5.0, 5.0, 10.0)
    got = lat.mmc_sojourn_ms(lam, np.ones(3), mu, max_servers=1)
    np.testing.assert_allclose(got, 1000.0 / (mu - lam))
    np.testing.assert_allclose(lat.erlang_c(np.ones(3), lam / mu, 1), lam / mu)  # M/M/1: P(wait) = rho


def test_mm2_closed_form():
    mu = 4.0
    lam = arr(0.5, 2.0, 4.0, 7.9)
    rho = lam / (2 * mu)
    a = lam / mu
    np.testing.assert_allclose(lat.erlang_c(np.full(4, 2), a, 2), a**2 / (2 + a))
    np.testing.assert_allclose(lat.mmc_sojourn_ms(lam, np.full(4, 2), np.full(4, mu), 2), 1000 / (mu * (1 - rho**2)))


def test_erlang_c_textbook_values():
    assert lat.erlang_c(arr(3), arr(2.0), 3)[0] == pytest.approx(4 / 9)
    cases = [(c, a) for c in range(1, 9) for a in (0.1 * c, 0.5 * c, 0.95 * c)]
    c, a = np.array([x[0] for x in cases]), np.array([x[1] for x in cases])
    np.testing.assert_allclose(lat.erlang_c(c, a, 8), [erlang_c_textbook(*x) for x in cases], rtol=1e-12)


def test_zero_servers_mean_no_queue():
    assert lat.erlang_c(arr(0, 2), arr(1.0, 1.0), 2).tolist() == [0.0, pytest.approx(1 / 3)]


def tail_by_integration(pw: float, theta: float, mu: float, t: float) -> float:
    """``P(Wq + S > t)`` with ``Wq`` = 0 w.p. ``1 - pw``, else Exp(theta); ``S`` ~ Exp(mu), by quadrature."""
    inner, _ = quad(lambda w: theta * math.exp(-theta * w) * math.exp(-mu * (t - w)), 0.0, t)
    return (1 - pw) * math.exp(-mu * t) + pw * (math.exp(-theta * t) + inner)


@pytest.mark.parametrize(
    ("pw", "theta", "mu"),
    [(0.0, 5.0, 5.0), (0.3, 2.0, 10.0), (0.8, 12.0, 3.0), (0.5, 4.0, 4.0), (1.0, 4.0 * (1 + 1e-12), 4.0)],
)
def test_mmc_tail_matches_numerical_integration(pw, theta, mu):
    ts_ms = np.array([0.0, 50.0, 200.0, 400.0, 1500.0])
    got = lat.mmc_tail(np.full(5, pw), np.full(5, theta), np.full(5, mu), ts_ms)
    want = [tail_by_integration(pw, theta, mu, t / 1000) for t in ts_ms]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_mmc_tail_of_a_spent_budget_is_one():
    assert lat.mmc_tail(arr(0.2), arr(3.0), arr(5.0), arr(-20.0))[0] == 1.0


def simulate_mmc(lam: float, mu: float, c: int, n: int, seed: int) -> np.ndarray:
    """Sojourn times of ``n`` customers of an FCFS M/M/c queue (event-driven, after a warm-up)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    services = rng.exponential(1 / mu, n)
    free = [0.0] * c  # heap of the times the servers become free
    out = np.empty(n)
    for i in range(n):
        start = max(arrivals[i], heapq.heappop(free))
        heapq.heappush(free, start + services[i])
        out[i] = start + services[i] - arrivals[i]
    return out[n // 10 :]


@pytest.mark.parametrize(
    ("lam", "mu", "c"),
    [(1.0, 1.0, 2), (2.0, 1.0, 4)],  # theta = c mu - lam == mu (degenerate branch of the tail), and theta != mu
)
def test_mmc_mean_and_tail_match_a_queue_simulation(lam, mu, c):
    soj = simulate_mmc(lam, mu, c, 80_000, seed=0)
    batch_means = soj[: len(soj) // 20 * 20].reshape(20, -1).mean(1)
    stderr = batch_means.std(ddof=1) / math.sqrt(20)
    mean = lat.mmc_sojourn_ms(arr(lam), arr(c), arr(mu), c)[0] / 1000
    assert abs(soj.mean() - mean) < 4 * stderr
    pw, theta = lat.mmc_wait(arr(lam), arr(c), arr(mu), c)
    for t in (0.5, 1.0, 2.0, 4.0):
        assert (soj > t).mean() == pytest.approx(lat.mmc_tail(pw, theta, arr(mu), arr(1000 * t))[0], abs=0.01)


# -- throttling -------------------------------------------------------------------------------------------


def upstream_burst(cpu: float, ram: float, n: int) -> tuple[list[float], float, float]:
    """The test-app server request by request: decay 100 once (first request of the burst), add 3.5 to
    each counter, cap at 200/256, ``load`` = mean ratio, sleep ``0.025 + 1.5 (load - 0.7)`` s above 0.7."""
    cpu, ram = max(cpu - 100, 0.0), max(ram - 100, 0.0)
    delays = []
    for _ in range(n):
        cpu, ram = min(cpu + 3.5, 200.0), min(ram + 3.5, 256.0)
        load = (cpu / 200 + ram / 256) / 2
        delays.append(1000 * (0.025 + 1.5 * (load - 0.7)) if load > 0.7 else 0.0)
    return delays, cpu, ram


def test_fresh_replica_burst_by_hand():
    delay, weight = lat.throttle_burst(arr(0.0), arr(0.0), arr(50.0))
    delay, weight = delay[0], weight[0]
    # request j sees both counters at 3.5 j: load = 3.5 j (1/200 + 1/256) / 2 > 0.7 from j = 45 on
    assert np.flatnonzero(delay > 0)[0] + 1 == 45
    assert delay[43] == 0.0  # j = 44: load (154/200 + 154/256)/2 = 0.6858
    assert delay[44] == pytest.approx(25 + 1500 * ((157.5 / 200 + 157.5 / 256) / 2 - 0.7))  # 27.05 ms
    assert delay[44] == pytest.approx(27.0508, abs=1e-4)
    assert delay[57] == pytest.approx(25 + 1500 * ((200 / 200 + 203 / 256) / 2 - 0.7))  # j = 58: CPU capped
    assert delay[-1] == pytest.approx(475.0)  # both capped: load 1 -> 25 + 450 ms
    assert weight.sum() == pytest.approx(50.0)
    assert weight[:50].tolist() == [1.0] * 50 and not weight[50:].any()


def test_burst_weights_cover_fractional_and_capped_requests():
    _, w = lat.throttle_burst(arr(0.0, 0.0), arr(0.0, 0.0), arr(2.5, 100.0))
    assert w[0, :3].tolist() == [1.0, 1.0, 0.5] and w[0].sum() == 2.5
    assert w[1, -1] == 100 - (lat.THROTTLE_GRID - 1)  # every request past the caps sits on the last point
    assert w[1].sum() == pytest.approx(100.0)


@pytest.mark.parametrize(("cpu", "ram", "n"), [(0, 0, 50), (0, 0, 120), (200, 256, 10), (150, 180, 40), (60, 30, 0)])
def test_burst_matches_the_upstream_server_request_by_request(cpu, ram, n):
    want, want_cpu, want_ram = upstream_burst(cpu, ram, n)
    c0, r0 = lat.throttle_decay(arr(cpu), arr(ram))
    delay, weight = lat.throttle_burst(c0, r0, arr(n))
    got = (delay * weight).sum()
    assert got == pytest.approx(sum(want), abs=1e-6)
    k = min(n, lat.THROTTLE_GRID - 1)
    np.testing.assert_allclose(delay[0, :k], want[:k], atol=1e-9)
    c1, r1 = lat.throttle_after(c0, r0, arr(n))
    assert (c1[0], r1[0]) == (pytest.approx(want_cpu), pytest.approx(want_ram))


def test_decay_and_caps():
    assert lat.throttle_decay(arr(200.0, 50.0), arr(256.0, 80.0)) == (pytest.approx([100, 0]), pytest.approx([156, 0]))
    cpu, ram = lat.throttle_after(arr(0.0, 190.0), arr(0.0, 250.0), arr(10.0, 10.0))
    assert cpu.tolist() == [35.0, 200.0] and ram.tolist() == [35.0, 256.0]
    assert lat.throttle_delay_ms(arr(0.7, 0.7 + 1e-9, 1.0)).tolist() == [0.0, pytest.approx(25.0), pytest.approx(475.0)]


def test_state_carries_across_two_consecutive_slots(make_world, small):
    small["nodes"] = small["nodes"][:1]
    small["latency"] = {"model": "throttling", "network_latency_ms": [[2.0]], "timeout_ms": 400.0}
    small["demand"]["slot_seconds"] = 10
    small["services"][0]["rate"] = 3.0
    model = SlotModel(make_world(small))
    one = np.ones((1, 1), dtype=np.int64)
    model.reset_state(1)
    requests = [60, 40]  # per 10-s slot on one replica; users send 1 request/s each
    cpu = ram = 0.0
    for n in requests:
        res = model.evaluate(one, np.array([[n / 10]]), previous=one)
        delays, cpu, ram = upstream_burst(cpu, ram, n)
        assert res.latency_ms[0] == pytest.approx(2.0 + np.mean(delays))
        assert res.violations[0] == pytest.approx(np.mean(np.array(delays) + 2.0 > 400.0))
        assert (model.cpu[0, 0], model.ram[0, 0]) == (pytest.approx(cpu), pytest.approx(ram))
    # a what-if evaluation (previous=None) starts from the carried, decayed counters; after a reset it is cold
    fresh = model.evaluate(one, np.array([[4.0]]), previous=None)
    model.reset_state(1)
    cold = model.evaluate(one, np.array([[4.0]]), previous=None)
    assert fresh.latency_ms[0] > cold.latency_ms[0] == 2.0
