"""The training job's view of MongoDB: start, report an iteration, and end a task (through ``serve_app.store``).

Every status change is the store's compare-and-set, so whichever of the job, the API (cancel) and the reconciler
moves a task first wins and the others leave it alone.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo.database import Database

from serve_app.store import InvalidTransitionError, NotFoundError
from serve_app.store import models as model_store
from serve_app.store import tasks as task_store
from serve_app.store.common import now

if TYPE_CHECKING:
    from serve_app.train_job import Run


class Cancelled(Exception):
    """The task was cancelled (flag in the task, or SIGTERM from ``stop_job``). Defined here, not in
    ``serve_app.train_job``: that module runs as ``__main__``, so a class of it imported by name elsewhere would be
    a second, different class."""


class UnknownTask(LookupError):
    """The job was started for a task id that is not in the database."""


@dataclass
class JobStore:
    db: Database
    storage_root: str
    data_dir: str = "."

    @classmethod
    def open(cls) -> JobStore:
        from serve_app.settings import get_settings
        from serve_app.store.client import get_db

        settings = get_settings()
        return cls(get_db(settings), settings.storage_root, str(settings.data_dir))

    def note(self, task_id: str, **fields: Any) -> None:
        """Record fields of the task that are not its status (``wandb_run``, ``trials``, ...)."""
        task_store.update_task(self.db, task_id, fields)

    def start(self, task_id: str) -> dict[str, Any] | None:
        """The task, now running; None when it was cancelled or had already ended (nothing to train)."""
        try:
            task = task_store.get_task(self.db, task_id)
        except (NotFoundError, ValueError) as e:
            raise UnknownTask(str(e)) from None
        if task["cancel_requested"]:
            self.cancelled(task_id, "cancelled before it started")
            return None
        if task["status"] == "pending":
            fields: dict[str, Any] = {"started_at": now()}
            if job_id := os.environ.get("RAY_JOB_SUBMISSION_ID"):
                fields["ray_job_id"] = job_id
            try:
                return task_store.set_status(self.db, task_id, "running", **fields)
            except InvalidTransitionError:
                return None
        return task if task["status"] == "running" else None

    def report(self, task_id: str, progress: float, row: dict[str, Any]) -> bool:
        """Record one iteration; True when the task should stop (cancel requested, or no longer running)."""
        values = {k: v for k, v in row.items() if v is not None}
        try:
            iteration = int(row["training_iteration"] or 0)
            task = task_store.append_progress(
                self.db, task_id, iteration=iteration, progress=progress, metrics_values=values
            )
        except InvalidTransitionError:
            return True
        return bool(task["cancel_requested"])

    def cancel_requested(self, task_id: str) -> bool:
        try:
            return bool(task_store.get_task(self.db, task_id)["cancel_requested"])
        except Exception:  # the database may be going down with the node: not a cancel
            return False

    @staticmethod
    def new_model_id() -> str:
        return str(ObjectId())

    def complete(
        self,
        task_id: str,
        model_id: str,
        run: Run,
        location: str,
        metrics: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> None:
        from serve_app import artifacts

        task = task_store.get_task(self.db, task_id)
        info = {
            "algorithm": run.algorithm,
            "env_id": run.env_id,
            "env_config": run.env_config,
            "preset": run.preset,
            "metrics": {k: v for k, v in metrics.items() if v is not None},
            "checkpoint_uri": f"{location}/{artifacts.CHECKPOINT}",
            "export_uri": f"{location}/{artifacts.EXPORT}",
            "owner": task.get("owner"),
            **(extra or {}),
        }
        name = str(task.get("name") or f"task-{task_id}")
        model_store.register_model(
            self.db,
            name=name,
            type=run.algorithm.lower(),
            artifact_uri=location,
            task_id=task_id,
            info=info,
            model_id=model_id,
        )
        with contextlib.suppress(InvalidTransitionError):  # cancelled meanwhile: the model stays registered
            task_store.set_status(self.db, task_id, "completed", model_id=model_id, finished_at=now())

    def cancelled(self, task_id: str, why: str) -> None:
        self._end(task_id, "cancelled", error=None, reason=why)

    def fail(self, task_id: str, error: str) -> None:
        self._end(task_id, "failed", error=error)

    def _end(self, task_id: str, status: str, **fields: Any) -> None:
        with contextlib.suppress(InvalidTransitionError, NotFoundError):
            task_store.set_status(self.db, task_id, status, finished_at=now(), **fields)
