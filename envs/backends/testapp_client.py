"""Latency measured by the upstream test-app client (adeptvin1/lwmecps-testapp, ``client/``), over HTTP (stdlib).

The contract used (read from the upstream ``client/api/endpoints.py`` and ``client/models.py``):

* ``POST /api/manage_group?group_id=<id>&state=start|pause|stop`` -> ``{"_id": ..., "state": ...}``;
* ``GET /api/group_stats?group_id=<id>`` -> ``GroupStats``: ``state``, ``experiments_stats`` (experiment id ->
  ``current_users``, ``current_interval`` (s between a user's requests), ``current_profile_index``,
  ``total_profiles``, ``average_latency``, ``requests_count``, ``success_rate``), cumulative
  ``total_requests``/``average_latency``/``success_rate`` and the windowed ``avg_latency_1m/5m/15m`` (ms).

The upstream client stores only successful requests, and its per-experiment ``average_latency`` is a mean over
the whole run. :func:`window_outcome` therefore differences two reads: the latency of one slot's window is
``(avg2 * n2 - avg1 * n1) / (n2 - n1)`` per experiment, the served requests ``n2 - n1``, and the expected
requests ``current_users * window / current_interval``; what was expected but not served counts as unserved
(at ``timeout_ms``, as in the simulator). Without per-experiment figures the windowed ``avg_latency_1m`` is used.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.backends.base import Outcome
from envs.backends.k8s_resources import ClusterError, UnreachableError
from envs.world import World


class TestAppError(ClusterError):
    """The test-app client answered with an error or an unexpected body."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class ExperimentStats:
    users: int
    interval_s: float
    average_latency_ms: float
    requests: int


@dataclass(frozen=True)
class GroupStats:
    state: str
    experiments: dict[str, ExperimentStats]
    avg_latency_1m: float


def parse_group_stats(body: Any) -> GroupStats:
    """The fields this package uses from a ``GroupStats`` body; ``TestAppError`` naming a missing field."""
    if not isinstance(body, dict):
        raise TestAppError(f"test-app: group_stats: expected a JSON object, got {type(body).__name__}")
    try:
        exps = {
            str(k): ExperimentStats(
                users=int(v["current_users"]),
                interval_s=float(v["current_interval"]),
                average_latency_ms=float(v["average_latency"]),
                requests=int(v["requests_count"]),
            )
            for k, v in dict(body.get("experiments_stats") or {}).items()
        }
        return GroupStats(str(body["state"]), exps, float(body.get("avg_latency_1m") or 0.0))
    except (KeyError, TypeError, ValueError) as err:
        raise TestAppError(f"test-app: group_stats: missing or bad field {err}") from None


class TestAppClient:
    """A small HTTP client of the test-app client API (``base_url`` like ``http://testapp-client:8001``)."""

    __test__ = False

    def __init__(self, base_url: str, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, **query: str) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:200].replace("\n", " ")
            raise TestAppError(f"test-app: {method} {path} -> HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise UnreachableError(f"test-app: cannot reach {self.base_url} ({reason})") from None
        except json.JSONDecodeError:
            raise TestAppError(f"test-app: {method} {path}: the answer is not JSON") from None

    def manage_group(self, group_id: str, state: str) -> dict[str, Any]:
        if state not in ("start", "pause", "stop"):
            raise ValueError(f"state: expected start, pause or stop, got {state!r}")
        return self._call("POST", "/api/manage_group", group_id=group_id, state=state)

    def group_stats(self, group_id: str) -> GroupStats:
        return parse_group_stats(self._call("GET", "/api/group_stats", group_id=group_id))


def window_outcome(
    world: World,
    before: GroupStats,
    after: GroupStats,
    experiments: Mapping[str, tuple[int, int]],
    window_s: float,
) -> Outcome:
    """One slot's :class:`Outcome` from two group reads ``window_s`` apart.

    ``experiments`` maps an experiment id to the (service index, cell index) whose users it plays. Requests
    expected but not served count at ``timeout_ms`` and as violations (the upstream client keeps no failed
    requests, so latencies over the timeout are only seen as missing requests: violations are a lower bound).
    """
    timeout = world.scenario.latency.timeout_ms
    S = world.n_services
    lat_sum, expected, served = np.zeros(S), np.zeros(S), np.zeros(S)
    for exp_id, (s, _cell) in experiments.items():
        now = after.experiments.get(exp_id)
        if now is None:
            continue
        old = before.experiments.get(exp_id, ExperimentStats(now.users, now.interval_s, 0.0, 0))
        n = max(now.requests - old.requests, 0)
        if n:
            lat_sum[s] += max(now.average_latency_ms * now.requests - old.average_latency_ms * old.requests, 0.0)
        served[s] += n
        expected[s] += now.users * window_s / now.interval_s if now.interval_s > 0 else n
    expected = np.maximum(expected, served)
    total = float(expected.sum())
    if total <= 0:  # no per-experiment figures: the windowed group mean, nothing known about failures
        return Outcome(after.avg_latency_1m, 0.0, 0.0, np.full(S, after.avg_latency_1m), 0.0)
    missing = expected - served
    svc = np.divide(lat_sum + missing * timeout, expected, out=np.zeros(S), where=expected > 0)
    unserved = float(missing.sum()) / total
    return Outcome(
        latency_ms=float((lat_sum + missing * timeout).sum()) / total,
        violations=unserved,
        unserved=unserved,
        service_latency_ms=svc,
        requests=total,
    )


class TestAppLatency:
    """The latency source of :class:`~envs.backends.kubernetes.KubernetesBackend` over the test-app client.

    ``experiments`` maps each experiment id of the group to the (service name, cell's station name) whose
    users it plays (upstream twin: one experiment per station, service ``testapp``).
    """

    __test__ = False

    def __init__(self, client: TestAppClient, group_id: str, experiments: Mapping[str, tuple[str, str]]):
        if not experiments:
            raise ValueError("experiments: need at least one experiment id -> (service, station)")
        self.client, self.group_id, self.names = client, group_id, dict(experiments)
        self.index: dict[str, tuple[int, int]] = {}
        self.last: GroupStats | None = None

    def start(self, world: World) -> None:
        """Check the mapping against the world, start the group (idempotent upstream) and take the baseline."""
        for exp_id, (svc, cell) in self.names.items():
            if svc not in world.service_names:
                raise ValueError(f"experiments[{exp_id!r}]: unknown service {svc!r}")
            if cell not in world.node_names:
                raise ValueError(f"experiments[{exp_id!r}]: unknown station {cell!r}")
            self.index[exp_id] = (world.service_names.index(svc), world.node_names.index(cell))
        self.client.manage_group(self.group_id, "start")
        self.last = self.client.group_stats(self.group_id)

    def measure(self, world: World, window_s: float) -> Outcome:
        if self.last is None:
            raise RuntimeError("TestAppLatency.measure before start")
        now = self.client.group_stats(self.group_id)
        out = window_outcome(world, self.last, now, self.index, window_s)
        self.last = now
        return out
