"""Processing-latency models (pure, vectorised numpy functions).

* M/M/c: a deployment with ``c`` replicas is one queue with ``c`` servers of rate ``mu`` each.
* Throttling: the upstream test-app server (adeptvin1/lwmecps-testapp ``server/api/endpoints.py``).
  Each request adds 2..5 load units (mean 3.5 is used) to a CPU counter capped at 200 and a RAM
  counter capped at 256; the first request at least 1 s after the last reset removes 100 units from
  each (with bursts 10 s apart: once per burst); ``load = (cpu/200 + ram/256) / 2``; above 0.7 the
  request sleeps ``max_latency * 0.05 + max_latency * (load - 0.7) * 3`` with ``max_latency = 0.5 s``.
"""

from __future__ import annotations

import numpy as np

THROTTLE_STEP = 3.5  # mean of randint(2, 5)
THROTTLE_CPU_CAP = 200.0
THROTTLE_RAM_CAP = 256.0
THROTTLE_DECAY = 100.0
THROTTLE_THRESHOLD = 0.7
THROTTLE_MAX_LATENCY_MS = 500.0
#: requests per replica per burst after which both counters are at their cap
THROTTLE_GRID = int(np.ceil(THROTTLE_RAM_CAP / THROTTLE_STEP)) + 1


def erlang_c(servers: np.ndarray, offered: np.ndarray, max_servers: int) -> np.ndarray:
    """Probability of waiting in an M/M/c queue, ``C(c, a)`` with ``a = lambda/mu`` (needs ``a < c``).

    Computed through the stable Erlang-B recursion ``B_k = a B_{k-1} / (k + a B_{k-1})``.
    Entries with ``servers == 0`` return 0.
    """
    b = np.ones_like(offered, dtype=np.float64)
    out = np.zeros_like(b)
    for k in range(1, max_servers + 1):
        b = offered * b / (k + offered * b)
        out = np.where(servers == k, b, out)
    rho = np.divide(offered, servers, out=np.zeros_like(b), where=servers > 0)
    return np.divide(out, 1.0 - rho * (1.0 - out), out=np.zeros_like(b), where=servers > 0)


def mmc_wait(lam: np.ndarray, servers: np.ndarray, mu: np.ndarray, max_servers: int) -> tuple[np.ndarray, np.ndarray]:
    """Erlang C probability and the residual rate ``theta = c*mu - lambda`` of an M/M/c queue (``lam < c*mu``)."""
    theta = servers * mu - lam
    return erlang_c(servers, lam / mu, max_servers), theta


def mmc_sojourn_ms(lam: np.ndarray, servers: np.ndarray, mu: np.ndarray, max_servers: int) -> np.ndarray:
    """Mean time in system ``1/mu + C(c,a)/(c mu - lambda)`` in ms (``1/mu`` where nothing waits)."""
    pw, theta = mmc_wait(lam, servers, mu, max_servers)
    wq = np.divide(pw, theta, out=np.zeros_like(pw), where=theta > 0)
    return 1000.0 * (1.0 / mu + wq)


def mmc_tail(pw: np.ndarray, theta: np.ndarray, mu: np.ndarray, budget_ms: np.ndarray) -> np.ndarray:
    """``P(T > t)`` for the M/M/c FCFS sojourn time ``T = Wq + S`` (exact).

    ``Wq`` is 0 with probability ``1 - C`` and ``Exp(theta)`` otherwise; ``S ~ Exp(mu)``, so
    ``P(T>t) = (1-C) e^{-mu t} + C (mu e^{-theta t} - theta e^{-mu t}) / (mu - theta)``
    (``(1 + mu t) e^{-mu t}`` when ``theta == mu``).
    """
    t = np.maximum(budget_ms, 0.0) / 1000.0
    e_mu = np.exp(-mu * t)
    diff = mu - theta
    close = np.abs(diff) < 1e-9 * np.maximum(mu, 1.0)
    safe = np.where(close, 1.0, diff)
    hypo = np.where(close, (1.0 + mu * t) * e_mu, (mu * np.exp(-theta * t) - theta * e_mu) / safe)
    return np.clip((1.0 - pw) * e_mu + pw * hypo, 0.0, 1.0)


def throttle_delay_ms(load: np.ndarray) -> np.ndarray:
    """Sleep of the test-app server at a given load factor, in ms."""
    over = load - THROTTLE_THRESHOLD
    delay = THROTTLE_MAX_LATENCY_MS * (0.05 + 3.0 * over)
    return np.where(over > 0, delay, 0.0)


def throttle_burst(cpu: np.ndarray, ram: np.ndarray, per_replica: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-request delays of one burst on one replica.

    ``cpu``/``ram``: counters at the start of the burst (after the decay), shape ``(...)``;
    ``per_replica``: requests arriving at that replica in the burst (may be fractional: the fluid mean of a
    round-robin split). Returns ``(delay_ms, weight)`` of shape ``(..., THROTTLE_GRID)``: the delay of
    the j-th request (the last grid point stands for every request past the caps) and how many requests
    that grid point carries (sums to ``per_replica``).
    """
    j = np.arange(1, THROTTLE_GRID + 1, dtype=np.float64)
    c = np.minimum(cpu[..., None] + THROTTLE_STEP * j, THROTTLE_CPU_CAP)
    r = np.minimum(ram[..., None] + THROTTLE_STEP * j, THROTTLE_RAM_CAP)
    delay = throttle_delay_ms((c / THROTTLE_CPU_CAP + r / THROTTLE_RAM_CAP) / 2.0)
    n = per_replica[..., None]
    weight = np.clip(n - (j - 1.0), 0.0, 1.0)
    weight[..., -1] = np.maximum(n[..., 0] - (THROTTLE_GRID - 1), 0.0)
    return delay, weight


def throttle_after(cpu: np.ndarray, ram: np.ndarray, per_replica: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counters after a burst of ``per_replica`` requests."""
    add = THROTTLE_STEP * per_replica
    return np.minimum(cpu + add, THROTTLE_CPU_CAP), np.minimum(ram + add, THROTTLE_RAM_CAP)


def throttle_decay(cpu: np.ndarray, ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The once-per-burst reset at the start of a slot."""
    return np.maximum(cpu - THROTTLE_DECAY, 0.0), np.maximum(ram - THROTTLE_DECAY, 0.0)
