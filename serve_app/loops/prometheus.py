"""Latency from Prometheus: an instant PromQL query giving each service's mean latency (ms) in the last window.

The query must return one series per service, labelled ``service=<name>`` (a series for an unknown service is
ignored); e.g. ``sum by (service) (rate(http_request_duration_seconds_sum[1m])) / sum by (service)
(rate(http_request_duration_seconds_count[1m])) * 1000``. Prometheus reports no unserved requests, so the
outcome's violations and unserved shares are 0 and the loop's reward has no SLA term from this source.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np

from envs.backends.base import Outcome
from envs.backends.k8s_resources import ClusterError, UnreachableError
from envs.world import World


class PrometheusError(ClusterError):
    """Prometheus answered with an error or an unexpected body."""


class PrometheusLatency:
    """A :class:`~envs.backends.k8s_plan.LatencySource` over the Prometheus HTTP API (``GET /api/v1/query``)."""

    def __init__(self, url: str, query: str, timeout_s: float = 10.0):
        self.url, self.query, self.timeout_s = url.rstrip("/"), query, timeout_s

    def _query(self) -> list[dict[str, Any]]:
        target = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': self.query})}"
        try:
            with urllib.request.urlopen(target, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise PrometheusError(f"prometheus: query -> HTTP {err.code}") from None
        except (urllib.error.URLError, OSError) as err:
            raise UnreachableError(f"prometheus: cannot reach {self.url} ({getattr(err, 'reason', err)})") from None
        except json.JSONDecodeError:
            raise PrometheusError("prometheus: the answer is not JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if body.get("status") != "success" or not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusError(f"prometheus: expected a successful instant vector, got {str(body)[:200]}")
        return list(data.get("result") or [])

    def start(self, world: World) -> None:
        self._query()  # fail fast on a bad URL or query

    def measure(self, world: World, window_s: float) -> Outcome:
        svc = np.zeros(world.n_services)
        seen = np.zeros(world.n_services, dtype=bool)
        for series in self._query():
            name = (series.get("metric") or {}).get("service")
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                raise PrometheusError(f"prometheus: a series without a numeric value: {str(series)[:200]}") from None
            if name in world.service_names and math.isfinite(value):
                s = world.service_names.index(name)
                svc[s], seen[s] = value, True
        mean = float(svc[seen].mean()) if seen.any() else 0.0
        return Outcome(latency_ms=mean, violations=0.0, unserved=0.0, service_latency_ms=svc, requests=0.0)
