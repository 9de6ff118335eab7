"""Deployed policies: ``{model_id, name, status, config, created_at, updated_at, ...}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.database import Database

from serve_app.store.common import (
    InvalidTransitionError,
    NotFoundError,
    Page,
    check_choice,
    delete_one,
    get_one,
    now,
    oid,
    page,
    public,
    set_fields,
)

COLLECTION = "deployments"
STATUSES = ("pending", "running", "failed", "stopped")
RESERVED = frozenset({"_id", "id", "model_id", "status", "created_at", "updated_at"})


def create_deployment(
    db: Database,
    *,
    model_id: str | ObjectId,
    name: str,
    config: Mapping[str, Any] | None = None,
    status: str = "pending",
) -> dict[str, Any]:
    check_choice(status, STATUSES, "status")
    t = now()
    doc: dict[str, Any] = {
        "model_id": str(oid(model_id, "model id")),
        "name": name,
        "status": status,
        "config": dict(config or {}),
        "created_at": t,
        "updated_at": t,
    }
    doc["_id"] = db[COLLECTION].insert_one(doc).inserted_id
    return public(doc)


def get_deployment(db: Database, deployment_id: str | ObjectId) -> dict[str, Any]:
    return get_one(db[COLLECTION], deployment_id, "deployment")


def list_deployments(
    db: Database, *, model_id: str | None = None, status: str | None = None, skip: int = 0, limit: int = 50
) -> Page:
    query: dict[str, Any] = {}
    if model_id is not None:
        query["model_id"] = str(oid(model_id, "model id"))
    if status is not None:
        query["status"] = check_choice(status, STATUSES, "status")
    return page(db[COLLECTION], query, skip, limit, [("created_at", -1), ("_id", -1)])


def update_status(db: Database, deployment_id: str | ObjectId, status: str, **fields: Any) -> dict[str, Any]:
    """Set the status (and any other ``fields``, e.g. ``error``, ``replicas``)."""
    check_choice(status, STATUSES, "status")
    bad = sorted(RESERVED & set(fields))
    if bad:
        raise ValueError(f"update_status cannot set {', '.join(bad)}")
    key = oid(deployment_id, "deployment id")
    update = set_fields({**fields, "status": status})
    doc = db[COLLECTION].find_one_and_update({"_id": key}, update, return_document=ReturnDocument.AFTER)
    if doc is None:
        raise NotFoundError(f"deployment {key} not found")
    return public(doc)


def swap_model(
    db: Database, deployment_id: str | ObjectId, model_id: str | ObjectId, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Point a running deployment at another model (with that model's runtime ``config``); the previous model id is
    kept as ``previous_model_id``. NotFoundError when there is no such deployment, InvalidTransitionError when it is
    not running (a concurrent undeploy wins)."""
    key = oid(deployment_id, "deployment id")
    current = get_deployment(db, key)
    update = set_fields(
        {"model_id": str(oid(model_id, "model id")), "config": dict(config), "previous_model_id": current["model_id"]}
    )
    doc = db[COLLECTION].find_one_and_update(
        {"_id": key, "status": "running"}, update, return_document=ReturnDocument.AFTER
    )
    if doc is None:
        raise InvalidTransitionError(f"deployment {key} is {get_deployment(db, key).get('status')}: swap not allowed")
    return public(doc)


def delete_deployment(db: Database, deployment_id: str | ObjectId) -> dict[str, Any]:
    return delete_one(db[COLLECTION], deployment_id, "deployment")
