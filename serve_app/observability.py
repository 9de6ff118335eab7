"""Prometheus metrics, optional OpenTelemetry tracing and an optional Redis cache for hot GET endpoints.

One :class:`Observability` per API app (its own ``CollectorRegistry``, so several apps in one process never clash):

- ``http_request_duration_seconds{method, route, status}``: request latency per route template;
- ``training_requests_total{outcome}``: training task submissions (``accepted``, ``rejected``, ``runtime_error``);
- ``training_duration_seconds{status}``: wall time of finished tasks, read from MongoDB at scrape time (the
  training runs in Ray jobs, other processes, so the database is the one place that sees every task finish);
- ``predict_requests_total{deployment_id, outcome}``, ``predict_duration_seconds``; per-deployment request
  statistics are also flushed to the ``metrics`` collection (kind ``predict``) every few seconds, so
  ``/api/v1/metrics/summary`` sees every replica's traffic.

Tracing is on when ``settings.otlp_endpoint`` is set and the OpenTelemetry SDK with the OTLP/HTTP exporter is
importable; caching when ``settings.redis_url`` is set and ``redis`` is importable. Both are optional imports.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from pymongo.database import Database

from serve_app.settings import Settings

log = logging.getLogger("serve_app.observability")
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
FLUSH_EVERY_S = 5.0


class TrainingDurations(Collector):
    """``training_duration_seconds{status}``: started (or created) -> finished (or last update) of finished tasks."""

    def __init__(self, db: Callable[[], Database], limit: int = 10_000):
        self.db = db
        self.limit = limit

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "training_duration_seconds", "Wall time of finished training tasks", labels=["status"]
        )
        rows: dict[str, list[float]] = {}
        try:
            query = {"status": {"$in": ["completed", "failed", "cancelled"]}}
            fields = {"status": 1, "created_at": 1, "started_at": 1, "finished_at": 1, "updated_at": 1}
            for doc in self.db()["tasks"].find(query, fields).sort("updated_at", -1).limit(self.limit):
                start = doc.get("started_at") or doc.get("created_at")
                end = doc.get("finished_at") or doc.get("updated_at")
                if start is not None and end is not None:
                    rows.setdefault(str(doc["status"]), []).append(max((end - start).total_seconds(), 0.0))
        except Exception as err:  # a scrape must not fail because the database hiccups
            log.warning("training_duration_seconds: %s", err)
        for status, values in sorted(rows.items()):
            buckets = [(str(le), float(sum(v <= le for v in values))) for le in DURATION_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            family.add_metric([status], buckets, sum(values))
        yield family


class PredictStats:
    """Per-deployment predict counts and latency since the last flush (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, float]] = {}
        self.last_flush = time.monotonic()

    def observe(self, deployment_id: str, seconds: float, ok: bool) -> None:
        with self._lock:
            row = self._rows.setdefault(deployment_id, {"requests": 0, "errors": 0, "latency_sum_s": 0.0})
            row["requests"] += 1
            row["errors"] += 0 if ok else 1
            row["latency_sum_s"] += seconds
            row["latency_max_s"] = max(row.get("latency_max_s", 0.0), seconds)

    def due(self) -> bool:
        return bool(self._rows) and time.monotonic() - self.last_flush >= FLUSH_EVERY_S

    def flush(self, db: Database) -> None:
        """Write the pending statistics as ``predict`` metric points (one per deployment)."""
        from serve_app.store import metrics

        with self._lock:
            rows, self._rows = self._rows, {}
            self.last_flush = time.monotonic()
        for deployment_id, values in rows.items():
            metrics.record(db, "predict", values, deployment_id=deployment_id)

    def flush_quietly(self, db: Database) -> None:
        """:meth:`flush` from a background task: a database error is logged (those counts are lost), not raised."""
        try:
            self.flush(db)
        except Exception as err:
            log.warning("could not store predict statistics: %s", err)


class Observability:
    def __init__(self, settings: Settings, db: Callable[[], Database]):
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.training_requests = Counter(
            "training_requests_total", "Training task submissions", ["outcome"], registry=self.registry
        )
        self.predict_requests = Counter(
            "predict_requests_total", "Predict requests", ["deployment_id", "outcome"], registry=self.registry
        )
        self.predict_duration = Histogram(
            "predict_duration_seconds",
            "Predict latency inside the API (validation + policy call)",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.registry.register(TrainingDurations(db))
        self.predict_stats = PredictStats()
        self.tracer, self.tracer_provider = _tracer(settings)
        self.cache = make_cache(settings.redis_url)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).observe(seconds)

    def observe_predict(self, deployment_id: str, seconds: float, ok: bool) -> None:
        self.predict_requests.labels(deployment_id, "ok" if ok else "error").inc()
        self.predict_duration.observe(seconds)
        self.predict_stats.observe(deployment_id, seconds, ok)

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[Any]:
        if self.tracer is None:
            yield None
            return
        with self.tracer.start_as_current_span(name) as span:
            yield span

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def _tracer(settings: Settings) -> tuple[Any, Any]:
    if not settings.otlp_endpoint:
        return None, None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("otlp_endpoint is set but the OpenTelemetry SDK / OTLP exporter is not installed: no tracing")
        return None, None
    provider = TracerProvider(resource=Resource.create({"service.name": "lwmecps"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    return provider.get_tracer("serve_app.api"), provider


class Cache:
    """A bytes cache with expiry; this base class caches nothing."""

    def get(self, key: str) -> bytes | None:
        return None

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        return None


class RedisCache(Cache):
    """Redis-backed; any Redis error is a miss (logged once), so a Redis outage never fails a request."""

    PREFIX = "lwmecps:cache:"

    def __init__(self, client: Any):
        self.client = client
        self._warned = False

    def _warn(self, err: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("redis cache unavailable, serving uncached: %s", err)

    def get(self, key: str) -> bytes | None:
        try:
            value = self.client.get(self.PREFIX + key)
        except Exception as err:
            self._warn(err)
            return None
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            self.client.set(self.PREFIX + key, value, px=max(int(ttl_s * 1000), 1))
        except Exception as err:
            self._warn(err)


def make_cache(redis_url: str | None) -> Cache:
    if not redis_url:
        return Cache()
    try:
        import redis
    except ImportError:
        log.warning("redis_url is set but the redis package is not installed: no caching")
        return Cache()
    return RedisCache(redis.Redis.from_url(redis_url, socket_timeout=0.2, socket_connect_timeout=0.2))
