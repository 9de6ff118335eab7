"""Service and training metrics (``/api/v1/metrics/...``), plus the unversioned ``/health`` and Prometheus
``/metrics``."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.database import Database

from serve_app.api.deps import DbDep, ObsDep, RuntimeDep, Viewer
from serve_app.api.errors import clean
from serve_app.runtime_protocol import RuntimeFailure, RuntimeUnavailable
from serve_app.schemas import OBJECT_ID, HealthPublic, MetricsSummary, TaskSeries
from serve_app.store import deployments, metrics, models, tasks
from serve_app.store.common import now

router = APIRouter(prefix="/metrics", tags=["metrics"])
root = APIRouter(tags=["service"])
SUMMARY_TTL_S = 2.0


def _training(db: Database) -> dict[str, Any]:
    t = now()
    running = list(db[tasks.COLLECTION].find({"status": "running"}, {"latest_metrics": 1}))
    rates = [(d.get("latest_metrics") or {}).get("env_steps_per_s") for d in running]
    return {
        "running": len(running),
        "iterations_last_hour": db[metrics.COLLECTION].count_documents(
            {"kind": "training", "timestamp": {"$gte": t - timedelta(hours=1)}}
        ),
        "env_steps_per_s": float(sum(r for r in rates if isinstance(r, int | float))),
        "completed_last_24h": db[tasks.COLLECTION].count_documents(
            {"status": "completed", "updated_at": {"$gte": t - timedelta(hours=24)}}
        ),
    }


def _predict(db: Database) -> dict[str, Any]:
    group = {
        "_id": "$deployment_id",
        "requests": {"$sum": "$values.requests"},
        "errors": {"$sum": "$values.errors"},
        "latency_sum_s": {"$sum": "$values.latency_sum_s"},
        "latency_max_s": {"$max": "$values.latency_max_s"},
    }
    per: dict[str, Any] = {}
    for row in db[metrics.COLLECTION].aggregate([{"$match": {"kind": "predict"}}, {"$group": group}]):
        n = int(row.get("requests") or 0)
        per[str(row["_id"])] = {
            "requests": n,
            "errors": int(row.get("errors") or 0),
            "latency_mean_ms": 1000.0 * float(row.get("latency_sum_s") or 0.0) / n if n else None,
            "latency_max_ms": 1000.0 * float(row.get("latency_max_s") or 0.0),
        }
    return {
        "requests": sum(v["requests"] for v in per.values()),
        "errors": sum(v["errors"] for v in per.values()),
        "per_deployment": per,
    }


@router.get("/summary", response_model=MetricsSummary)
def summary(user: Viewer, db: DbDep, obs: ObsDep) -> Response:
    """Tasks and models by status, running deployments, training throughput and predict request statistics."""
    cached = obs.cache.get("metrics-summary")
    if cached is not None:
        return Response(cached, media_type="application/json")
    obs.predict_stats.flush(db)
    body = MetricsSummary(
        tasks_by_status=metrics.counts_by(db, tasks.COLLECTION, zero_fill=tasks.STATUSES),
        models_by_status=metrics.counts_by(db, models.COLLECTION, zero_fill=models.STATUSES),
        deployments=deployments.list_deployments(db, status="running", limit=1).total,
        training=_training(db),
        predict=_predict(db),
    )
    raw = json.dumps(jsonable_encoder(body)).encode()
    obs.cache.set("metrics-summary", raw, SUMMARY_TTL_S)
    return Response(raw, media_type="application/json")


@router.get("/tasks/{task_id}", response_model=TaskSeries)
def task_series(
    task_id: Annotated[str, Path(pattern=OBJECT_ID)],
    user: Viewer,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict:
    """The task's per-iteration metric points, oldest first."""
    tasks.get_task(db, task_id)  # 404 for an unknown task
    points = metrics.series(db, kind="training", task_id=task_id, limit=limit)
    return {"task_id": task_id, "points": points}


@root.get("/health", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def health(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Database ping and runtime status: 200 when both are fine, 503 otherwise (no authentication)."""
    try:
        request.app.state.db().command("ping")
        database = "ok"
    except Exception as err:
        database = f"unavailable: {clean(err)}"
    try:
        runtime_state: dict[str, Any] = dict(runtime.status())
    except (RuntimeUnavailable, RuntimeFailure) as err:
        runtime_state = {"status": "unavailable", "detail": clean(err)}
    ok = database == "ok" and runtime_state.get("status", "ok") == "ok"
    body = HealthPublic(status="ok" if ok else "degraded", database=database, runtime=runtime_state)
    return JSONResponse(jsonable_encoder(body), status_code=200 if ok else 503)


@root.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def prometheus(obs: ObsDep) -> Response:
    """Prometheus text exposition (no authentication, like any scrape target)."""
    return Response(generate_latest(obs.registry), media_type=CONTENT_TYPE_LATEST)
