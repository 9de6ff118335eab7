"""Closed loops and their decisions: collections ``loops`` and ``decisions`` (indexes in ``store.client.INDEXES``:
``loops(status)``, ``decisions(loop_id, timestamp)``).

A loop document is the desired state (``status``: ``running`` until someone asks it to stop) plus what its runner
reports: ``owner`` and ``lease_until`` (the runner that holds it; a lease is claimed with one compare-and-set, so
two runners never drive the same cluster), ``steps``, per-outcome counters and ``last_decision``. The kubeconfig
is kept Fernet-encrypted in ``kubeconfig_enc``, which :func:`public` never returns.

Counters are flat fields ``count_<status>`` (nx-27017 stores a dotted ``$inc`` path as a literal key), and a free
lease is ``owner: ""`` with ``lease_until`` at the epoch rather than nulls (nx-27017 matches no ``null`` inside
``$or``); :func:`get_loop` shows both as ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from serve_app.store.common import NotFoundError, Page, check_choice, now, oid, page, public, set_fields

COLLECTION = "loops"
DECISIONS = "decisions"
STATUSES = ("running", "stopping", "stopped", "failed", "completed")
ACTIVE = ("running", "stopping")
SECRET = "kubeconfig_enc"
FREE = {"owner": "", "lease_until": datetime(1970, 1, 1, tzinfo=UTC)}
METRICS = "metrics"  # serve_app.store.metrics.COLLECTION


def counter(status: str) -> str:
    """The loop field counting decisions of ``status`` (``rolled back`` -> ``count_rolled_back``)."""
    return "count_" + re.sub(r"[^a-z0-9]+", "_", status.lower()).strip("_")


def _public(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = public(doc, hidden=(SECRET,))
    if not out.get("owner"):
        out["owner"] = out["lease_until"] = None
    out["counts"] = {k.removeprefix("count_"): int(v) for k, v in out.items() if k.startswith("count_")}
    return {k: v for k, v in out.items() if not k.startswith("count_")}


def create_loop(db: Database, fields: Mapping[str, Any], kubeconfig_enc: str) -> dict[str, Any]:
    t = now()
    doc = {**fields, SECRET: kubeconfig_enc, "status": "running", **FREE,
           "steps": 0, "last_decision": None, "error": None, "created_at": t, "updated_at": t}  # fmt: skip
    doc["_id"] = db[COLLECTION].insert_one(doc).inserted_id
    return _public(doc)


def get_loop(db: Database, loop_id: str | ObjectId) -> dict[str, Any]:
    key = oid(loop_id, "loop id")
    doc = db[COLLECTION].find_one({"_id": key}, {SECRET: 0})
    if doc is None:
        raise NotFoundError(f"loop {key} not found")
    return _public(doc)


def get_secret(db: Database, loop_id: str | ObjectId) -> str:
    """The encrypted kubeconfig (for the runner only)."""
    doc = db[COLLECTION].find_one({"_id": oid(loop_id, "loop id")}, {SECRET: 1})
    if doc is None:
        raise NotFoundError(f"loop {loop_id} not found")
    return str(doc[SECRET])


def list_loops(db: Database, *, status: str | None = None, skip: int = 0, limit: int = 50) -> Page:
    query = {} if status is None else {"status": check_choice(status, STATUSES, "status")}
    cursor = db[COLLECTION].find(query, {SECRET: 0}).sort([("created_at", -1), ("_id", -1)]).skip(skip).limit(limit)
    return Page([_public(d) for d in cursor], db[COLLECTION].count_documents(query), skip, limit)


def request_stop(db: Database, loop_id: str | ObjectId) -> dict[str, Any]:
    """``running`` -> ``stopping`` (its runner then finishes the current period and marks it ``stopped``);
    a loop already stopping or ended is returned unchanged."""
    key = oid(loop_id, "loop id")
    doc = db[COLLECTION].find_one_and_update(
        {"_id": key, "status": "running"}, set_fields({"stop_requested_at": now(), "status": "stopping"}),
        return_document=ReturnDocument.AFTER,
    )  # fmt: skip
    return _public(doc) if doc is not None else get_loop(db, key)


def claim(db: Database, loop_id: str | ObjectId, owner: str, lease_s: float) -> dict[str, Any] | None:
    """Take or renew the lease of an active loop (free, expired or already ours); the loop, or None if another
    runner holds it or it is no longer active."""
    t = now()
    free = [{"owner": owner}, {"lease_until": {"$lt": t}}]
    doc = db[COLLECTION].find_one_and_update(
        {"_id": oid(loop_id, "loop id"), "status": {"$in": list(ACTIVE)}, "$or": free},
        set_fields({"owner": owner, "lease_until": t + timedelta(seconds=lease_s)}),
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else _public(doc)


def steering(db: Database, cluster_server: str, namespace: str) -> str | None:
    """The id of an active loop already steering ``namespace`` on that API server, if any."""
    query = {"cluster_server": cluster_server, "namespace": namespace, "status": {"$in": list(ACTIVE)}}
    doc = db[COLLECTION].find_one(query, {"_id": 1})
    return None if doc is None else str(doc["_id"])


def latest_cluster_metrics(db: Database) -> dict[str, dict[str, Any]]:
    """Per running loop, its latest ``cluster`` metric point (node and pod usage): ``{loop_id: {timestamp, ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for loop_id in [str(d["_id"]) for d in db[COLLECTION].find({"status": "running"}, {"_id": 1})]:
        cur = db[METRICS].find({"kind": "cluster", "values.loop_id": loop_id}).sort([("timestamp", -1)]).limit(1)
        for doc in cur:
            values = {k: v for k, v in doc["values"].items() if k != "loop_id"}
            out[loop_id] = {"timestamp": public(doc)["timestamp"], **values}
    return out


def active_ids(db: Database) -> list[str]:
    return [str(d["_id"]) for d in db[COLLECTION].find({"status": {"$in": list(ACTIVE)}}, {"_id": 1})]


def finish(db: Database, loop_id: str | ObjectId, status: str, owner: str, error: str | None = None) -> None:
    """End an active loop held by ``owner`` (``stopped``, ``failed`` or ``completed``) and release its lease."""
    check_choice(status, ("stopped", "failed", "completed"), "status")
    fields: dict[str, Any] = {"status": status, **FREE, "stopped_at": now()}
    if error is not None:
        fields["error"] = error
    db[COLLECTION].update_one(
        {"_id": oid(loop_id, "loop id"), "owner": owner, "status": {"$in": list(ACTIVE)}}, set_fields(fields)
    )


def release(db: Database, loop_id: str | ObjectId, owner: str) -> None:
    """Give up ``owner``'s lease without changing the loop's status (another runner may take it at once)."""
    db[COLLECTION].update_one({"_id": oid(loop_id, "loop id"), "owner": owner}, set_fields(FREE))


def mark(db: Database, loop_id: str | ObjectId, **fields: Any) -> None:
    """Set runner-reported fields (e.g. ``started_at``, ``error``) without touching the lifecycle."""
    if {"status", "owner", SECRET} & set(fields):
        raise ValueError("mark cannot set status, owner or the kubeconfig")
    db[COLLECTION].update_one({"_id": oid(loop_id, "loop id")}, set_fields(fields))


def record_decision(db: Database, loop_id: str, decision: Mapping[str, Any]) -> str:
    """Store one decision (``status`` required) and update the loop's counters and ``last_decision``."""
    t = decision.get("timestamp")
    doc = {**decision, "loop_id": str(oid(loop_id, "loop id")), "timestamp": t if isinstance(t, datetime) else now()}
    doc_id = db[DECISIONS].insert_one(doc).inserted_id
    update = set_fields({"last_decision": {k: v for k, v in doc.items() if k != "_id"}})
    update["$inc"] = {"steps": 1, counter(str(decision["status"])): 1}
    db[COLLECTION].update_one({"_id": oid(loop_id, "loop id")}, update)
    return str(doc_id)


def list_decisions(db: Database, loop_id: str, *, skip: int = 0, limit: int = 50, newest_first: bool = True) -> Page:
    query = {"loop_id": str(oid(loop_id, "loop id"))}
    order = DESCENDING if newest_first else ASCENDING
    return page(db[DECISIONS], query, skip, limit, [("timestamp", order), ("step", order), ("_id", order)])
