"""Closed loops (``/api/v1/loops``): attach a deployed policy to a cluster, inspect, read decisions, stop; and
``GET /api/v1/metrics/cluster``, the node and pod usage the running loops saved from ``metrics.k8s.io``.

The API only writes the desired state (a ``running`` loop, then ``stopping``); the loop runner
(:class:`serve_app.loops.runner.LoopSupervisor`, in the ``LoopRunner`` Serve deployment) does the rest.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import yaml
from fastapi import APIRouter, Path, Query, Request

from serve_app.api.deps import DbDep, Limit, Operator, SettingsDep, Skip, Viewer
from serve_app.api.errors import ConflictState, InputError
from serve_app.loops.spec import ClusterMetricsPublic, DecisionPage, LoopCreate, LoopPage, LoopPublic
from serve_app.schemas import OBJECT_ID
from serve_app.security import encrypt
from serve_app.store import deployments, models
from serve_app.store import loops as store

router = APIRouter(prefix="/loops", tags=["loops"])
metrics_router = APIRouter(prefix="/metrics", tags=["metrics"])
LoopId = Annotated[str, Path(pattern=OBJECT_ID, description="loop id (24 hex digits)")]
LoopStatus = Annotated[str | None, Query(pattern="^(" + "|".join(store.STATUSES) + ")$")]


def _server(kubeconfig: str, context: str | None) -> str:
    """The API server URL the kubeconfig's (given or current) context points at."""
    try:
        cfg = yaml.safe_load(kubeconfig)
        name = context or cfg.get("current-context")
        ctx = next((c.get("context") or {} for c in cfg.get("contexts") or [] if c.get("name") == name), None)
        clusters = {c.get("name"): c.get("cluster") or {} for c in cfg.get("clusters") or []}
        server = None if ctx is None else clusters.get(ctx.get("cluster"), {}).get("server")
    except (yaml.YAMLError, AttributeError, TypeError):
        raise InputError("kubeconfig: not a kubeconfig (contexts and clusters lists expected)") from None
    if not isinstance(server, str) or not server:
        raise InputError(f"kubeconfig: context {name!r} names no cluster with a server URL")
    return server


def _scenario(request: Request, body: LoopCreate, model: dict[str, Any]) -> str:
    """The loop's scenario: the one given (its observation and action spaces must be the model's) or the model's."""
    import envs
    from serve_app.loops.build import check_latency, world_of
    from serve_app.loops.controller import LoopError

    shape = request.app.state.env_shapes.get(model)
    own = (model.get("env_config") or {}).get("scenario") or envs.ENV_IDS.get(str(model.get("env_id")))
    name = body.scenario or own
    if not isinstance(name, str):
        raise InputError("scenario: the model's scenario is not a preset name: give one describing the cluster")
    try:
        world = world_of(name)
        check_latency(world, body.latency.model_dump())
    except LoopError as err:
        raise InputError(str(err)) from None
    if body.scenario is not None:
        from envs.dynamics import Dynamics

        dyn = Dynamics(world)
        if dyn.obs_dim != shape.obs_dim or not np.array_equal(dyn.nvec, shape.nvec):
            raise InputError(
                f"scenario: {name!r} has {world.n_slots} slots / observation size {dyn.obs_dim}, the deployed model "
                f"acts on {shape.n_slots} slots / observation size {shape.obs_dim}"
            )
    return name


@router.post("", status_code=201, response_model=LoopPublic)
def start_loop(body: LoopCreate, user: Operator, db: DbDep, settings: SettingsDep, request: Request) -> dict:
    """Attach a running deployment's policy to a cluster: every ``period_s`` the loop observes the cluster, asks
    the policy and applies its decision (``dry_run``, the default, records without applying)."""
    dep = deployments.get_deployment(db, body.deployment_id)
    if dep.get("status") != "running":
        raise ConflictState(f"deployment {dep['id']} is {dep.get('status')}: only a running deployment can steer")
    model = models.get_model(db, dep["model_id"])
    scenario = _scenario(request, body, model)
    from serve_app.loops.build import api_client
    from serve_app.loops.controller import LoopError

    kubeconfig = body.kubeconfig.get_secret_value()
    try:
        api_client(kubeconfig, body.context).close()  # parse only: nothing is sent to the cluster here
    except LoopError as err:
        raise InputError(str(err)) from None
    server = _server(kubeconfig, body.context)
    busy = store.steering(db, server, body.namespace)
    if busy is not None:
        raise ConflictState(f"loop {busy} already steers namespace {body.namespace} on {server}: stop it first")
    fields = body.model_dump(exclude={"kubeconfig"})
    fields |= {"scenario": scenario, "model_id": dep["model_id"], "cluster_server": server, "created_by": user.username}
    return store.create_loop(db, fields, encrypt(kubeconfig, settings))


@router.get("", response_model=LoopPage)
def list_loops(user: Viewer, db: DbDep, status: LoopStatus = None, skip: Skip = 0, limit: Limit = 50) -> dict:
    got = store.list_loops(db, status=status, skip=skip, limit=limit)
    return {"items": got.items, "total": got.total, "skip": skip, "limit": limit}


@router.get("/{loop_id}", response_model=LoopPublic)
def get_loop(loop_id: LoopId, user: Viewer, db: DbDep) -> dict:
    """Status, counts of decisions by outcome, and the last decision."""
    return store.get_loop(db, loop_id)


@router.get("/{loop_id}/decisions", response_model=DecisionPage)
def list_decisions(
    loop_id: LoopId,
    user: Viewer,
    db: DbDep,
    skip: Skip = 0,
    limit: Limit = 50,
    order: Annotated[str, Query(pattern="^(newest|oldest)$")] = "newest",
) -> dict:
    store.get_loop(db, loop_id)  # 404 for an unknown loop
    got = store.list_decisions(db, loop_id, skip=skip, limit=limit, newest_first=order == "newest")
    return {"items": got.items, "total": got.total, "skip": skip, "limit": limit}


@router.post("/{loop_id}/stop", response_model=LoopPublic)
def stop_loop(loop_id: LoopId, user: Operator, db: DbDep) -> dict:
    """Ask the loop to stop (idempotent): ``stopping`` until its runner ends the current period, then ``stopped``."""
    return store.request_stop(db, loop_id)


@metrics_router.get("/cluster", response_model=ClusterMetricsPublic)
def cluster_metrics(user: Viewer, db: DbDep) -> dict:
    """Per running loop, the latest node and pod usage (``metrics.k8s.io``, cores and MiB) it saved, with the
    requests of the placement it runs; empty when no cluster is attached."""
    return {"clusters": store.latest_cluster_metrics(db)}
