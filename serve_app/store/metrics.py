"""Metric points ``{timestamp, kind, task_id | deployment_id, values}``: training iterations, predict statistics.

Counts by status use ``$group`` (the wire server has no ``$sortByCount``/``$lookup``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo.database import Database

from serve_app.store.common import MAX_LIMIT, check_name, now, oid, public

COLLECTION = "metrics"


def record(
    db: Database,
    kind: str,
    values: Mapping[str, Any],
    *,
    task_id: str | None = None,
    deployment_id: str | None = None,
    timestamp: datetime | None = None,
) -> str:
    """Store one point; returns its id. ``kind`` is a short ``[a-z0-9_]`` label such as ``training``/``predict``."""
    check_name(kind, "metric kind")
    doc: dict[str, Any] = {"timestamp": timestamp or now(), "kind": kind, "values": dict(values)}
    if task_id is not None:
        doc["task_id"] = str(oid(task_id, "task id"))
    if deployment_id is not None:
        doc["deployment_id"] = str(oid(deployment_id, "deployment id"))
    return str(db[COLLECTION].insert_one(doc).inserted_id)


def series(
    db: Database,
    *,
    kind: str | None = None,
    task_id: str | None = None,
    deployment_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = MAX_LIMIT,
) -> list[dict[str, Any]]:
    """Points in time order (oldest first), filtered by kind, task, deployment and ``[since, until)``."""
    if not 1 <= limit <= 100 * MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {100 * MAX_LIMIT}, got {limit}")
    query: dict[str, Any] = {}
    if kind is not None:
        query["kind"] = check_name(kind, "metric kind")
    if task_id is not None:
        query["task_id"] = str(oid(task_id, "task id"))
    if deployment_id is not None:
        query["deployment_id"] = str(oid(deployment_id, "deployment id"))
    window: dict[str, Any] = {}
    if since is not None:
        window["$gte"] = since
    if until is not None:
        window["$lt"] = until
    if window:
        query["timestamp"] = window
    return [public(d) for d in db[COLLECTION].find(query).sort([("timestamp", 1), ("_id", 1)]).limit(limit)]


def counts_by(db: Database, collection: str, field: str = "status", *, zero_fill: Iterable[str] = ()) -> dict[str, int]:
    """How many documents of ``collection`` have each value of ``field`` (``zero_fill`` values appear as 0)."""
    check_name(collection)
    check_name(field, "field")
    counts = dict.fromkeys(zero_fill, 0)
    for row in db[collection].aggregate([{"$group": {"_id": f"${field}", "n": {"$sum": 1}}}]):
        counts[str(row["_id"])] = int(row["n"])
    return counts


def delete_for(db: Database, *, task_id: str | None = None, deployment_id: str | None = None) -> int:
    """Delete the points of one task or deployment; returns how many."""
    if (task_id is None) == (deployment_id is None):
        raise ValueError("give exactly one of task_id, deployment_id")
    query = (
        {"task_id": str(oid(task_id, "task id"))}
        if task_id is not None
        else {"deployment_id": str(oid(deployment_id or "", "deployment id"))}
    )
    return int(db[COLLECTION].delete_many(query).deleted_count)
