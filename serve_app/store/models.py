"""Trained models: ``{name, type (algorithm), status, task_id, artifact_uri, ...metadata, created_at}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.database import Database

from serve_app.store.common import (
    NotFoundError,
    Page,
    check_choice,
    check_name,
    delete_one,
    get_one,
    now,
    oid,
    page,
    public,
    set_fields,
)

COLLECTION = "models"
STATUSES = ("ready", "deployed", "failed", "archived")
RESERVED = frozenset({"_id", "id", "name", "type", "status", "task_id", "artifact_uri", "created_at", "updated_at"})


def register_model(
    db: Database,
    *,
    name: str,
    type: str,
    artifact_uri: str,
    task_id: str | None = None,
    status: str = "ready",
    info: Mapping[str, Any] | None = None,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Store a model; ``type`` is the algorithm (``ppo``, ``dqn``, ...), ``info`` any extra metadata fields;
    ``model_id`` an id chosen beforehand (training names the artifact directory after it)."""
    check_name(type, "model type")
    check_choice(status, STATUSES, "status")
    extra = dict(info or {})
    bad = sorted(RESERVED & set(extra))
    if bad:
        raise ValueError(f"model info must not set {', '.join(bad)}")
    t = now()
    doc: dict[str, Any] = {
        **extra,
        "name": name,
        "type": type,
        "status": status,
        "task_id": None if task_id is None else str(oid(task_id, "task id")),
        "artifact_uri": artifact_uri,
        "created_at": t,
        "updated_at": t,
    }
    if model_id is not None:
        doc["_id"] = oid(model_id, "model id")
    doc["_id"] = db[COLLECTION].insert_one(doc).inserted_id
    return public(doc)


def get_model(db: Database, model_id: str | ObjectId) -> dict[str, Any]:
    return get_one(db[COLLECTION], model_id, "model")


def list_models(
    db: Database, *, type: str | None = None, status: str | None = None, skip: int = 0, limit: int = 50
) -> Page:
    """Models newest first, optionally of one type and/or status (served by the ``models(type, status)`` index)."""
    query: dict[str, Any] = {}
    if type is not None:
        query["type"] = check_name(type, "model type")
    if status is not None:
        query["status"] = check_choice(status, STATUSES, "status")
    return page(db[COLLECTION], query, skip, limit, [("created_at", -1), ("_id", -1)])


def mark_status(db: Database, model_id: str | ObjectId, status: str) -> dict[str, Any]:
    check_choice(status, STATUSES, "status")
    key = oid(model_id, "model id")
    doc = db[COLLECTION].find_one_and_update(
        {"_id": key}, set_fields({"status": status}), return_document=ReturnDocument.AFTER
    )
    if doc is None:
        raise NotFoundError(f"model {key} not found")
    return public(doc)


def delete_model(db: Database, model_id: str | ObjectId) -> dict[str, Any]:
    """Delete a model's document and return it (the caller removes its artifacts at ``artifact_uri``)."""
    return delete_one(db[COLLECTION], model_id, "model")
