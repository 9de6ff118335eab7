"""Trained models: list, get, delete (admin), evaluate against a scenario, deploy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from serve_app.api.deps import Admin, DbDep, Limit, Operator, RuntimeDep, SettingsDep, Skip, Viewer
from serve_app.api.errors import ConflictState, InputError, clean
from serve_app.runtime_protocol import RuntimeFailure, RuntimeUnavailable
from serve_app.schemas import OBJECT_ID, DeploymentAccepted, EvaluateCreate, ModelPage, ModelPublic
from serve_app.store import deployments, models

log = logging.getLogger("serve_app.api.models")
router = APIRouter(prefix="/models", tags=["models"])
ModelId = Annotated[str, Path(pattern=OBJECT_ID, description="model id (24 hex digits)")]
ModelType = Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,63}$", description="algorithm, e.g. ppo")]
ModelStatus = Annotated[str | None, Query(pattern="^(" + "|".join(models.STATUSES) + ")$")]
DEPLOYABLE = ("ready", "deployed")


@router.get("", response_model=ModelPage)
def list_models(
    user: Viewer, db: DbDep, type: ModelType = None, status: ModelStatus = None, skip: Skip = 0, limit: Limit = 50
) -> dict:
    page = models.list_models(db, type=type, status=status, skip=skip, limit=limit)
    return {"items": page.items, "total": page.total, "skip": skip, "limit": limit}


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(model_id: ModelId, user: Viewer, db: DbDep) -> dict:
    return models.get_model(db, model_id)


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(model_id: ModelId, user: Admin, db: DbDep, settings: SettingsDep) -> Response:
    """Delete a model and its files; 409 while a deployment of it is running."""
    models.get_model(db, model_id)
    live = deployments.list_deployments(db, model_id=model_id, status="running", limit=1).total
    if live:
        raise ConflictState(f"model {model_id} has {live} running deployment(s): undeploy first")
    models.delete_model(db, model_id)
    from serve_app import artifacts

    try:
        artifacts.remove(settings.storage_root, model_id)
    except OSError as err:  # the document is gone; leftover files are logged, not an error for the client
        log.warning("model %s: could not remove its files: %s", model_id, clean(err))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{model_id}/evaluate")
def evaluate_model(model_id: ModelId, user: Operator, db: DbDep, body: EvaluateCreate | None = None) -> dict[str, Any]:
    """A short evaluation in the API process (torch only, no Ray): the model's exported policy, and any baselines,
    on held-out demand of its env (or of ``scenario``, a preset with the same slots), ``seeds`` x ``steps`` slots.
    Returns :meth:`policies.evaluate.EvalResult.to_dict`."""
    from policies.base import PlacementPolicy
    from policies.evaluate import evaluate
    from policies.heuristics import GreedyLatency, StaticK, UniformRandom
    from policies.rllib.policy import RLlibPolicy
    from serve_app import artifacts

    body = body or EvaluateCreate()
    model = models.get_model(db, model_id)
    if not model.get("export_uri"):
        raise ConflictState(f"model {model_id} has no exported policy to evaluate")
    env: Any = body.scenario
    if env is None:
        scenario = (model.get("env_config") or {}).get("scenario")
        env = scenario if isinstance(scenario, str) else model.get("env_id")
        if isinstance(scenario, dict):
            from envs.scenario import parse_scenario

            env = parse_scenario(scenario)
    else:
        from envs.presets import PRESETS

        if env not in PRESETS:
            raise InputError(f"scenario: unknown scenario preset {env!r} (known: {', '.join(PRESETS)})")
    try:
        policy = RLlibPolicy.from_export(artifacts.fetch_local(str(model["export_uri"])))
    except (OSError, ValueError, KeyError) as err:
        raise ConflictState(f"model {model_id}: cannot load its export: {clean(err)}") from None
    baselines: dict[str, Callable[[], PlacementPolicy]] = {
        "static-1": lambda: StaticK(1),
        "greedy-latency": GreedyLatency,
        "random": UniformRandom,
    }
    policies: dict[str, PlacementPolicy] = {"model": policy, **{name: baselines[name]() for name in body.baselines}}
    try:
        result = evaluate(policies, env, seeds=body.seeds, steps=body.steps)
    except ValueError as err:
        raise InputError(f"scenario: {clean(err)}") from None
    return result.to_dict()


@router.post("/{model_id}/deploy", response_model=DeploymentAccepted, status_code=status.HTTP_201_CREATED)
def deploy_model(model_id: ModelId, user: Operator, db: DbDep, runtime: RuntimeDep, request: Request) -> dict:
    """Serve the model: a deployment document, then the runtime makes the policy servable under its id."""
    model = models.get_model(db, model_id)
    if model.get("status") not in DEPLOYABLE:
        raise ConflictState(f"model {model_id} is {model.get('status')}: only a ready model can be deployed")
    request.app.state.env_shapes.get(model)  # fails early (409) when its env cannot be built; warms the cache
    dep = deployments.create_deployment(db, model_id=model_id, name=str(model.get("name") or model_id))
    try:
        config = runtime.deploy(dep["id"], model)
    except (RuntimeUnavailable, RuntimeFailure) as err:
        deployments.update_status(db, dep["id"], "failed", error=clean(err))
        raise
    dep = deployments.update_status(db, dep["id"], "running", config=dict(config or {}), owner=user.username)
    models.mark_status(db, model_id, "deployed")
    return {"deployment_id": dep["id"], "model_id": model_id, "status": dep["status"]}
