"""Training tasks: ``pending -> running -> completed | failed | cancelled`` (``pending`` may also end directly).

Status changes are compare-and-set (one ``find_one_and_update`` filtered on the allowed previous statuses), so a
job finishing and the reconciler failing it cannot both win. Credentials a task needs (a W&B key) are stored
already encrypted under ``secrets`` and never returned by :func:`get_task` / :func:`list_tasks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.database import Database

from serve_app.store import metrics
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

COLLECTION = "tasks"
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ACTIVE = ("pending", "running")
TERMINAL = ("completed", "failed", "cancelled")
#: status -> the statuses it may move to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("running", "failed", "cancelled"),
    "running": ("completed", "failed", "cancelled"),
    "completed": (),
    "failed": (),
    "cancelled": (),
}
HIDDEN = ("secrets",)
#: fields only this module sets (through create/set_status/request_cancel/append_progress)
MANAGED = frozenset({"_id", "id", "status", "created_at", "updated_at", "cancel_requested", "secrets"})


def create_task(db: Database, spec: Mapping[str, Any], *, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Store a new pending task from ``spec`` (name, preset/algorithm, env config, hparams, owner, ...).

    ``secrets`` maps names to ciphertexts (see :func:`serve_app.security.encrypt`); they are never returned.
    """
    bad = sorted(MANAGED & set(spec))
    if bad:
        raise ValueError(f"task spec must not set {', '.join(bad)}")
    t = now()
    doc: dict[str, Any] = {
        "progress": 0.0,
        "iteration": 0,
        "latest_metrics": {},
        "ray_job_id": None,
        "wandb_run": None,
        "model_id": None,
        "error": None,
        **spec,
        "status": "pending",
        "cancel_requested": False,
        "created_at": t,
        "updated_at": t,
        "secrets": dict(secrets or {}),
    }
    doc["_id"] = db[COLLECTION].insert_one(doc).inserted_id
    return public(doc, HIDDEN)


def get_task(db: Database, task_id: str | ObjectId) -> dict[str, Any]:
    return get_one(db[COLLECTION], task_id, "task", HIDDEN)


def get_secret(db: Database, task_id: str | ObjectId, name: str) -> str | None:
    """The stored ciphertext of one of the task's secrets (None if it has none by that name)."""
    key = oid(task_id, "task id")
    doc = db[COLLECTION].find_one({"_id": key}, {"secrets": 1})
    if doc is None:
        raise NotFoundError(f"task {key} not found")
    value = (doc.get("secrets") or {}).get(name)
    return None if value is None else str(value)


def list_tasks(
    db: Database,
    *,
    status: str | Iterable[str] | None = None,
    owner: str | None = None,
    skip: int = 0,
    limit: int = 50,
) -> Page:
    """Tasks newest first, optionally only those with a status (or any of several) and/or an owner."""
    query: dict[str, Any] = {}
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        for s in wanted:
            check_choice(s, STATUSES, "status")
        query["status"] = wanted[0] if len(wanted) == 1 else {"$in": wanted}
    if owner is not None:
        query["owner"] = owner
    return page(db[COLLECTION], query, skip, limit, [("created_at", -1), ("_id", -1)], HIDDEN)


def update_task(db: Database, task_id: str | ObjectId, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``fields`` (not the status: see :func:`set_status`); returns the updated task."""
    bad = sorted(MANAGED & set(fields))
    if bad:
        raise ValueError(f"update_task cannot set {', '.join(bad)}")
    return _update(db, task_id, {}, set_fields(fields))


def set_status(db: Database, task_id: str | ObjectId, status: str, **fields: Any) -> dict[str, Any]:
    """Move the task to ``status`` (and set ``fields``) if the lifecycle allows it from its current status."""
    check_choice(status, STATUSES, "status")
    bad = sorted(MANAGED & set(fields))
    if bad:
        raise ValueError(f"set_status cannot set {', '.join(bad)}")
    sources = [s for s, targets in TRANSITIONS.items() if status in targets]
    update: dict[str, Any] = {**fields, "status": status}
    if status == "completed":
        update.setdefault("progress", 1.0)
    return _update(db, task_id, {"status": {"$in": sources}}, set_fields(update), f"-> {status}")


def request_cancel(db: Database, task_id: str | ObjectId) -> dict[str, Any]:
    """Flag a pending or running task for cancellation (the job and the reconciler then mark it cancelled)."""
    return _update(db, task_id, {"status": {"$in": list(ACTIVE)}}, set_fields({"cancel_requested": True}), "cancel")


def append_progress(
    db: Database,
    task_id: str | ObjectId,
    *,
    iteration: int,
    progress: float,
    metrics_values: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Record one training iteration of a running task: its progress (0..1), latest metrics, and a metric point."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be within [0, 1], got {progress}")
    values = dict(metrics_values or {})
    point = {"iteration": int(iteration), "progress": float(progress)}
    update = set_fields({**point, "latest_metrics": values})
    task = _update(db, task_id, {"status": "running"}, update, "progress")
    metrics.record(db, "training", {**point, **values}, task_id=task["id"])
    return task


def delete_task(db: Database, task_id: str | ObjectId) -> dict[str, Any]:
    """Delete a task (returns it as it was, without secrets)."""
    doc = delete_one(db[COLLECTION], task_id, "task")
    for name in HIDDEN:
        doc.pop(name, None)
    return doc


def _update(
    db: Database, task_id: str | ObjectId, condition: Mapping[str, Any], update: Mapping[str, Any], what: str = ""
) -> dict[str, Any]:
    key = oid(task_id, "task id")
    doc = db[COLLECTION].find_one_and_update(
        {"_id": key, **condition}, dict(update), return_document=ReturnDocument.AFTER
    )
    if doc is not None:
        return public(doc, HIDDEN)
    current = db[COLLECTION].find_one({"_id": key}, {"status": 1})
    if current is None:
        raise NotFoundError(f"task {key} not found")
    raise InvalidTransitionError(f"task {key} is {current['status']}: {what} not allowed")
