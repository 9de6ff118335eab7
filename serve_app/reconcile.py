"""Task status from Ray job status, so that no task stays ``pending``/``running`` after its job is gone.

:func:`reconcile_once` looks at every active task: a job that is still pending or running is left alone (a
cancelled task's job is asked to stop again); a job that ended without the task being ended by the job itself
(crash, OOM kill, ``stop_job`` before the job could write, a Ray cluster restarted under it) ends the task:
``cancelled`` when a cancel was requested, else ``failed`` with the reason. A task never handed to Ray (the API
died between storing and submitting it) fails after a grace period. Status changes are the store's
compare-and-set, so a job finishing at the same moment wins or loses cleanly. :func:`run_periodically` is the
asyncio task the ingress replica runs (start-up, then every ``period_s`` seconds).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

from serve_app.runtime_protocol import Runtime, RuntimeFailure, RuntimeUnavailable
from serve_app.store import InvalidTransitionError, NotFoundError
from serve_app.store import tasks as task_store
from serve_app.store.common import now

log = logging.getLogger(__name__)

#: seconds a task may stay without a Ray job id before it counts as never submitted
SUBMIT_GRACE_S = 120.0
_ENDED = {
    "SUCCEEDED": "its Ray job {job} ended without recording a result",
    "FAILED": "its Ray job {job} failed (see the task's logs)",
    "STOPPED": "its Ray job {job} was stopped",
    None: "its Ray job {job} is gone (the Ray cluster was restarted or the job was deleted)",
}


def _age_s(task: dict[str, Any]) -> float:
    created = task.get("created_at")
    if not isinstance(created, datetime):
        return 0.0
    return (datetime.now(UTC) - created.astimezone(UTC)).total_seconds()


def _end(db: Database, task: dict[str, Any], reason: str) -> str | None:
    """End an active task (cancelled if a cancel was requested, else failed); the new status, or None if lost."""
    status = "cancelled" if task.get("cancel_requested") else "failed"
    fields: dict[str, Any] = {"finished_at": now()}
    if status == "failed":
        fields["error"] = reason
    try:
        task_store.set_status(db, task["id"], status, **fields)
    except (InvalidTransitionError, NotFoundError):  # the job (or someone) ended it first
        return None
    log.info("reconcile: task %s -> %s (%s)", task["id"], status, reason)
    return status


def reconcile_task(db: Database, runtime: Runtime, task: dict[str, Any]) -> str | None:
    """Reconcile one active task; returns its new status when it changed."""
    job = task.get("ray_job_id")
    if not job:
        if _age_s(task) > SUBMIT_GRACE_S:
            return _end(db, task, "it was never submitted to Ray")
        return None
    state = runtime.job_status(job)
    if state in ("PENDING", "RUNNING"):
        if task.get("cancel_requested"):
            runtime.stop_job(job)
        return None
    try:  # re-read: the job may have ended the task between our listing and its exit
        task = task_store.get_task(db, task["id"])
    except NotFoundError:
        return None
    if task["status"] not in task_store.ACTIVE:
        return None
    return _end(db, task, _ENDED.get(state, _ENDED[None]).format(job=job))


def reconcile_once(db: Database, runtime: Runtime) -> dict[str, str]:
    """Reconcile every active task; returns ``{task_id: new status}`` of those that changed."""
    changed: dict[str, str] = {}
    active = task_store.list_tasks(db, status=list(task_store.ACTIVE), limit=1000).items
    for task in active:
        try:
            status = reconcile_task(db, runtime, task)
        except RuntimeUnavailable as e:  # Ray down: decide nothing now, try again next round
            log.warning("reconcile: Ray unavailable: %s", e)
            break
        except RuntimeFailure as e:
            log.warning("reconcile: task %s: %s", task["id"], e)
            continue
        if status is not None:
            changed[task["id"]] = status
    return changed


async def run_periodically(db: Database, runtime: Runtime, period_s: float) -> None:
    """Reconcile now, then every ``period_s`` seconds, until cancelled (blocking calls run in a thread)."""
    while True:
        try:
            await asyncio.to_thread(reconcile_once, db, runtime)
        except Exception:  # a database hiccup must not end the loop
            log.exception("reconcile: round failed")
        await asyncio.sleep(period_s)
