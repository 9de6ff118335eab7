"""The reconciler against the real nx-27017 server, with a stand-in for Ray's job status (the Ray boundary only)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from serve_app.reconcile import reconcile_once
from serve_app.runtime_protocol import RuntimeUnavailable
from serve_app.store import tasks


class Jobs:
    """Job states by id (None: unknown to Ray); records stop requests."""

    def __init__(self, states: dict[str, str | None], down: bool = False):
        self.states, self.down, self.stopped = states, down, []

    def job_status(self, job_id: str) -> str | None:
        if self.down:
            raise RuntimeUnavailable("Ray job server not reachable")
        return self.states.get(job_id)

    def stop_job(self, job_id: str) -> None:
        self.stopped.append(job_id)


def _task(db: Database, job: str | None, status: str = "running", cancel: bool = False) -> dict[str, Any]:
    task = tasks.create_task(db, {"name": f"t-{job}", "preset": "testapp-ppo"})
    if job is not None:
        tasks.update_task(db, task["id"], {"ray_job_id": job})
    if status != "pending":
        tasks.set_status(db, task["id"], status)
    if cancel:
        tasks.request_cancel(db, task["id"])
    return task


def test_ended_or_lost_jobs_end_their_tasks(db: Database) -> None:
    failed = _task(db, "j-failed")
    stopped = _task(db, "j-stopped", cancel=True)
    lost = _task(db, "j-lost")
    crashed_after_success = _task(db, "j-ok")
    running = _task(db, "j-run")
    jobs = Jobs({"j-failed": "FAILED", "j-stopped": "STOPPED", "j-ok": "SUCCEEDED", "j-run": "RUNNING"})

    changed = reconcile_once(db, jobs)

    assert changed == {
        failed["id"]: "failed",
        stopped["id"]: "cancelled",
        lost["id"]: "failed",
        crashed_after_success["id"]: "failed",
    }
    assert "j-failed failed" in tasks.get_task(db, failed["id"])["error"]
    assert "is gone" in tasks.get_task(db, lost["id"])["error"]
    assert tasks.get_task(db, running["id"])["status"] == "running"
    assert reconcile_once(db, jobs) == {}  # idempotent


def test_running_job_of_a_cancelled_task_is_stopped_again(db: Database) -> None:
    task = _task(db, "j-run", cancel=True)
    jobs = Jobs({"j-run": "RUNNING"})
    assert reconcile_once(db, jobs) == {}
    assert jobs.stopped == ["j-run"] and tasks.get_task(db, task["id"])["status"] == "running"


def test_a_task_the_job_already_ended_is_left_alone(db: Database) -> None:
    task = _task(db, "j-done")
    tasks.set_status(db, task["id"], "completed", model_id=None)
    assert reconcile_once(db, Jobs({"j-done": "SUCCEEDED"})) == {}
    assert tasks.get_task(db, task["id"])["status"] == "completed"


@pytest.mark.parametrize("status", ["pending", "running"])
def test_ray_down_decides_nothing(db: Database, status: str) -> None:
    task = _task(db, "j-x", status=status)
    assert reconcile_once(db, Jobs({}, down=True)) == {}
    assert tasks.get_task(db, task["id"])["status"] == status


def test_a_fresh_pending_task_without_a_job_waits(db: Database) -> None:
    task = _task(db, None, status="pending")
    assert reconcile_once(db, Jobs({})) == {}
    assert tasks.get_task(db, task["id"])["status"] == "pending"
