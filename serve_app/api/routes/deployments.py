"""Deployed policies: list, get, swap the model (``PUT``), undeploy, predict (one observation or snapshot) and
predict_batch.

Predict is the hot path: the deployment, its model and the model env's shape are cached in the process for
:data:`LOOKUP_TTL_S` (undeploying through this process drops the entry at once), so a steady stream of predicts
costs no database round trip; the policy call is awaited on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from serve_app.api.deps import DbDep, Limit, Operator, RuntimeDep, Skip, Viewer
from serve_app.api.errors import ConflictState, InputError
from serve_app.api.observations import EnvShape, from_observation, from_snapshot, placement_of
from serve_app.observability import Observability
from serve_app.schemas import (
    OBJECT_ID,
    DeploymentPage,
    DeploymentPublic,
    DeploymentUpdate,
    ObservationIn,
    PredictBatchCreate,
    PredictBatchPublic,
    PredictIn,
    PredictPublic,
    SnapshotIn,
)
from serve_app.store import deployments, models

router = APIRouter(prefix="/deployments", tags=["deployments"])
DeploymentId = Annotated[str, Path(pattern=OBJECT_ID, description="deployment id (24 hex digits)")]
DeploymentStatus = Annotated[str | None, Query(pattern="^(" + "|".join(deployments.STATUSES) + ")$")]
LOOKUP_TTL_S = 2.0


class Lookups:
    """deployment id -> (deployment, model, env shape) for a couple of seconds. A lookup that read the database
    before a :meth:`forget` (a swap or undeploy) does not put its stale row back."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[float, dict[str, Any], dict[str, Any], EnvShape]] = {}
        self._lock = threading.Lock()
        self._forgotten = 0  # bumped by every forget

    def get(self, request: Request, deployment_id: str) -> tuple[dict[str, Any], dict[str, Any], EnvShape]:
        now = time.monotonic()
        with self._lock:
            hit = self._rows.get(deployment_id)
            generation = self._forgotten
        if hit is not None and hit[0] > now:
            return hit[1], hit[2], hit[3]
        db = request.app.state.db()
        dep = deployments.get_deployment(db, deployment_id)
        if dep.get("status") != "running":
            raise ConflictState(f"deployment {deployment_id} is {dep.get('status')}: it serves no predictions")
        model = models.get_model(db, dep["model_id"])
        shape = request.app.state.env_shapes.get(model)
        with self._lock:
            if len(self._rows) > 1000:
                self._rows.clear()
            if generation == self._forgotten:
                self._rows[deployment_id] = (now + LOOKUP_TTL_S, dep, model, shape)
        return dep, model, shape

    def forget(self, deployment_id: str) -> None:
        with self._lock:
            self._forgotten += 1
            self._rows.pop(deployment_id, None)


@router.get("", response_model=DeploymentPage)
def list_deployments(
    user: Viewer,
    db: DbDep,
    model_id: Annotated[str | None, Query(pattern=OBJECT_ID)] = None,
    status: DeploymentStatus = None,
    skip: Skip = 0,
    limit: Limit = 50,
) -> dict:
    page = deployments.list_deployments(db, model_id=model_id, status=status, skip=skip, limit=limit)
    return {"items": page.items, "total": page.total, "skip": skip, "limit": limit}


@router.get("/{deployment_id}", response_model=DeploymentPublic)
def get_deployment(deployment_id: DeploymentId, user: Viewer, db: DbDep) -> dict:
    return deployments.get_deployment(db, deployment_id)


@router.put("/{deployment_id}", response_model=DeploymentPublic)
def swap_model(
    deployment_id: DeploymentId,
    body: DeploymentUpdate,
    user: Operator,
    db: DbDep,
    runtime: RuntimeDep,
    request: Request,
) -> dict:
    """Serve another model under this deployment without failed requests: the new model (same observation and
    action spaces, else 422) is loaded and warmed where it will serve, then the deployment points at it; requests
    already under way finish on the old model. 404 unknown deployment or model, 409 not running / not ready."""
    from serve_app.api.routes.models import DEPLOYABLE

    dep = deployments.get_deployment(db, deployment_id)
    if dep.get("status") != "running":
        raise ConflictState(f"deployment {deployment_id} is {dep.get('status')}: only a running one can swap models")
    new = models.get_model(db, body.model_id)
    if new["id"] == dep["model_id"]:
        return dep
    if new.get("status") not in DEPLOYABLE:
        raise ConflictState(f"model {new['id']} is {new.get('status')}: only a ready model can be deployed")
    shapes = request.app.state.env_shapes
    want, got = _spaces(shapes.get(models.get_model(db, dep["model_id"]))), _spaces(shapes.get(new))
    if want != got:
        raise InputError(f"model_id: model {new['id']} acts on {got}, the deployment's model on {want}")
    config = runtime.deploy(deployment_id, new)  # warm first: a failure leaves the deployment as it was
    dep = deployments.swap_model(db, deployment_id, new["id"], dict(config or {}))
    request.app.state.lookups.forget(deployment_id)
    models.mark_status(db, new["id"], "deployed")
    old = dep["previous_model_id"]
    if not deployments.list_deployments(db, model_id=old, status="running", limit=1).total:
        with contextlib.suppress(LookupError):
            models.mark_status(db, old, "ready")
    return dep


def _spaces(shape: Any) -> str:
    return f"observations of {shape.obs_dim} values, action mask {shape.mask_dim}, nvec {shape.nvec.tolist()}"


@router.delete("/{deployment_id}", response_model=DeploymentPublic)
def undeploy(deployment_id: DeploymentId, user: Operator, db: DbDep, runtime: RuntimeDep, request: Request) -> dict:
    """Stop serving (idempotent); the document stays, ``stopped``, with its request statistics."""
    dep = deployments.get_deployment(db, deployment_id)
    request.app.state.lookups.forget(deployment_id)
    if dep.get("status") == "stopped":
        return dep
    runtime.undeploy(dep)
    dep = deployments.update_status(db, deployment_id, "stopped")
    if not deployments.list_deployments(db, model_id=dep["model_id"], status="running", limit=1).total:
        with contextlib.suppress(LookupError):  # the model may have been deleted meanwhile
            models.mark_status(db, dep["model_id"], "ready")
    return dep


async def _predict(
    request: Request, deployment_id: str, items: list[ObservationIn | SnapshotIn]
) -> tuple[dict[str, Any], list[list[int]]]:
    state = request.app.state
    obs: Observability = state.obs
    dep, model, shape = await run_in_threadpool(state.lookups.get, request, deployment_id)
    prepared: list[tuple[dict[str, np.ndarray], np.ndarray | None]] = []
    for i, item in enumerate(items):
        where = "body" if len(items) == 1 else f"body.items[{i}]"
        if isinstance(item, SnapshotIn):
            prepared.append(from_snapshot(shape, item, where))
        else:
            prepared.append((from_observation(shape, item, where), None))
    t0 = time.perf_counter()
    ok = False
    try:
        actions = await state.runtime.predict(dep, [o for o, _ in prepared])
        if len(actions) != len(prepared):
            from serve_app.runtime_protocol import RuntimeFailure

            raise RuntimeFailure(f"the policy answered {len(actions)} of {len(prepared)} observations")
        placements = [placement_of(shape, a, o, prev) for a, (o, prev) in zip(actions, prepared, strict=True)]
        ok = True
    finally:
        obs.observe_predict(deployment_id, time.perf_counter() - t0, ok)
        if obs.predict_stats.due():
            task = asyncio.create_task(asyncio.to_thread(obs.predict_stats.flush_quietly, state.db()))
            state.background.add(task)  # keep a reference until it is done
            task.add_done_callback(state.background.discard)
    return model, placements


@router.post("/{deployment_id}/predict", response_model=PredictPublic)
async def predict(
    deployment_id: DeploymentId, body: Annotated[PredictIn, Body()], user: Operator, request: Request
) -> dict:
    """One observation (``observations`` + ``action_mask``) or snapshot (``slot``, ``users``, ``placement``) in,
    a placement (replicas per slot) out: within the mask, and for a snapshot applied so it fits the nodes."""
    model, placements = await _predict(request, deployment_id, [body])
    return {"deployment_id": deployment_id, "model_id": model["id"], "placement": placements[0]}


@router.post("/{deployment_id}/predict_batch", response_model=PredictBatchPublic)
async def predict_batch(
    deployment_id: DeploymentId, body: PredictBatchCreate, user: Operator, request: Request
) -> dict:
    """Up to 256 observations or snapshots in one call (one policy call for all of them)."""
    model, placements = await _predict(request, deployment_id, list(body.items))
    return {"deployment_id": deployment_id, "model_id": model["id"], "placements": placements}
