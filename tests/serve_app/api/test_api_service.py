"""Service endpoints and cross-cutting behaviour: health, Prometheus metrics, metric summaries, body limits, content
types, unknown routes, tracing over OTLP/HTTP and the Redis cache."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve_app.api.main import create_api
from serve_app.observability import RedisCache
from serve_app.store import tasks

Api = Any  # the conftest's Api


def test_health_ok_and_degraded(api: Api) -> None:
    r = api.client.get("/health")
    expected = {"status": "ok", "database": "ok", "runtime": {"status": "ok", "ray": "in-memory"}}
    assert r.status_code == 200 and r.json() == expected
    api.runtime.down = True
    r = api.client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "degraded"
    assert r.json()["runtime"] == {"status": "unavailable", "detail": "Ray is not reachable at 127.0.0.1:6379"}


def test_prometheus_metrics(api: Api) -> None:
    operator = api.as_role("operator")
    assert (
        api.client.post("/api/v1/training", json={"name": "x", "preset": "nope"}, headers=operator).status_code == 422
    )
    task_id = api.client.post("/api/v1/training", json={"name": "x", "preset": "testapp-ppo"}, headers=operator).json()[
        "id"
    ]
    api.client.get(f"/api/v1/training/{task_id}", headers=operator)
    tasks.set_status(api.db, task_id, "running")
    tasks.set_status(api.db, task_id, "completed")
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'training_requests_total{outcome="accepted"} 1.0' in text
    assert 'training_requests_total{outcome="rejected"} 1.0' in text
    assert 'training_duration_seconds_count{status="completed"} 1.0' in text
    assert (
        'http_request_duration_seconds_count{method="GET",route="/api/v1/training/{task_id}",status="200"} 1.0' in text
    ), [x for x in text.splitlines() if "_count" in x]


def test_summary_and_task_series(api: Api, make_model: Callable[..., dict[str, Any]]) -> None:
    operator, viewer = api.as_role("operator"), api.as_role("viewer")
    ids = [api.client.post("/api/v1/training", json={"name": f"t{i}", "preset": "testapp-ppo"}, headers=operator)
           .json()["id"] for i in range(3)]  # fmt: skip
    tasks.set_status(api.db, ids[0], "running")
    for i in (1, 2):
        tasks.append_progress(api.db, ids[0], iteration=i, progress=i / 4, metrics_values={"env_steps_per_s": 50.0 * i})
    tasks.set_status(api.db, ids[1], "cancelled")
    dep = api.client.post(f"/api/v1/models/{make_model()['id']}/deploy", headers=operator).json()["deployment_id"]
    snapshot = {"slot": 0, "users": [1, 1, 1, 1], "placement": [1, 1, 1, 1]}
    for _ in range(3):
        assert api.client.post(f"/api/v1/deployments/{dep}/predict", json=snapshot, headers=operator).status_code == 200

    s = api.client.get("/api/v1/metrics/summary", headers=viewer).json()
    assert s["tasks_by_status"] == {"pending": 1, "running": 1, "completed": 0, "failed": 0, "cancelled": 1}
    assert s["models_by_status"]["deployed"] == 1 and s["deployments"] == 1
    assert s["training"]["running"] == 1 and s["training"]["iterations_last_hour"] == 2
    assert s["training"]["env_steps_per_s"] == 100.0
    assert s["predict"]["requests"] == 3 and s["predict"]["errors"] == 0
    assert s["predict"]["per_deployment"][dep]["requests"] == 3

    series = api.client.get(f"/api/v1/metrics/tasks/{ids[0]}", headers=viewer).json()
    assert [p["values"]["iteration"] for p in series["points"]] == [1, 2]
    assert series["points"][1]["values"]["env_steps_per_s"] == 100.0
    assert api.client.get(f"/api/v1/metrics/tasks/{'0' * 24}", headers=viewer).status_code == 404
    assert api.client.get("/api/v1/metrics/summary").status_code == 401


def test_body_limit_and_content_types(api: Api) -> None:
    operator = api.as_role("operator")
    limit = api.settings.max_body_bytes
    big = b'{"name": "' + b"x" * (limit + 10) + b'"}'
    r = api.client.post("/api/v1/training", content=big, headers={**operator, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"].startswith("request body too large"), r.text

    def chunks() -> Iterator[bytes]:  # no content-length: counted while streaming
        yield b'{"name": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    r = api.client.post("/api/v1/training", content=chunks(), headers={**operator, "content-type": "application/json"})
    assert r.status_code == 413
    r = api.client.post("/api/v1/training", content=b"name=x", headers={**operator, "content-type": "text/plain"})
    assert (
        r.status_code == 415 and r.json()["detail"] == "content-type 'text/plain' not supported: send application/json"
    )
    r = api.client.post("/api/v1/auth/token", json={"username": "a", "password": "b"})
    assert r.status_code == 415 and "application/x-www-form-urlencoded" in r.json()["detail"]
    r = api.client.post("/api/v1/training", data={"name": "x"}, headers=operator)
    assert r.status_code == 415


def test_unknown_routes_and_methods(api: Api) -> None:
    r = api.client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = api.client.put("/api/v1/training", json={}, headers=api.as_role("admin"))
    assert r.status_code == 405
    assert api.client.get("/openapi.json").json()["info"]["title"] == "lwmecps-gym service"
    assert api.client.get("/docs").status_code == 200


class _Collector(BaseHTTPRequestHandler):
    bodies: list[bytes] = []  # noqa: RUF012

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_traces_go_to_the_otlp_endpoint(settings: Any, db: Any, runtime: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        traced = settings.model_copy(update={"otlp_endpoint": f"http://127.0.0.1:{server.server_port}/v1/traces"})
        app = create_api(traced, runtime, db)
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
            app.state.obs.tracer_provider.force_flush()
        sent = b"".join(_Collector.bodies)
        assert b"GET /health" in sent and b"lwmecps" in sent
    finally:
        server.shutdown()


class _FakeRedis:
    def __init__(self, broken: bool = False) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.broken = broken

    def get(self, key: str) -> bytes | None:
        if self.broken:
            raise ConnectionError("redis down")
        return self.data[key][0] if key in self.data else None

    def set(self, key: str, value: bytes, px: int) -> None:
        if self.broken:
            raise ConnectionError("redis down")
        self.data[key] = (value, px)


def test_redis_cache_stores_with_expiry_and_survives_outages() -> None:
    client = _FakeRedis()
    cache = RedisCache(client)
    assert cache.get("k") is None
    cache.set("k", b"v", 2.0)
    assert client.data == {"lwmecps:cache:k": (b"v", 2000)} and cache.get("k") == b"v"
    broken = RedisCache(_FakeRedis(broken=True))
    broken.set("k", b"v", 1.0)
    assert broken.get("k") is None


@pytest.mark.parametrize("path", ["/api/v1/training/{id}", "/api/v1/models/{id}", "/api/v1/deployments/{id}"])
def test_errors_are_one_clean_line(api: Api, path: str) -> None:
    r = api.client.get(path.format(id="zz" * 12), headers=api.as_role("viewer"))
    detail = r.json()["detail"]
    assert r.status_code == 422 and "\n" not in detail and detail.startswith("path.")
