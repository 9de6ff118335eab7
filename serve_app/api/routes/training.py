"""Training tasks: create (202, the job runs on Ray), list, get, cancel, delete (admin), logs."""

from __future__ import annotations

import logging
import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from serve_app.api.deps import Admin, DbDep, Limit, ObsDep, Operator, RuntimeDep, SettingsDep, Skip, Viewer
from serve_app.api.errors import ApiError, ConflictState, InputError, clean
from serve_app.api.validation import task_spec
from serve_app.runtime_protocol import RuntimeFailure, RuntimeUnavailable
from serve_app.schemas import OBJECT_ID, TaskAccepted, TaskLogs, TaskPage, TaskPublic, TaskStatus, TrainingTaskCreate
from serve_app.security import encrypt
from serve_app.store import InvalidTransitionError, metrics, tasks

log = logging.getLogger("serve_app.api.training")
router = APIRouter(prefix="/training", tags=["training"])
TaskId = Annotated[str, Path(pattern=OBJECT_ID, description="task id (24 hex digits)")]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


@router.post("", response_model=TaskAccepted, status_code=status.HTTP_202_ACCEPTED)
def create_task(
    body: TrainingTaskCreate, user: Operator, db: DbDep, settings: SettingsDep, runtime: RuntimeDep, obs: ObsDep
) -> dict:
    """Validate the request (unknown preset/algorithm/scenario, bad hyperparameters -> 422), store the task and
    submit its Ray job. A W&B API key is stored encrypted and never returned."""
    try:
        spec = task_spec(body, user.username, settings)
    except InputError:
        obs.training_requests.labels("rejected").inc()
        raise
    secrets, job_env = {}, {}
    if body.wandb.api_key is not None:
        key = body.wandb.api_key.get_secret_value()
        secrets["wandb_api_key"] = encrypt(key, settings)
        job_env["WANDB_API_KEY"] = key  # the job's runtime env only (the job drops it unless W&B runs online)
    task = tasks.create_task(db, spec, secrets=secrets)
    try:
        job_id = runtime.submit_training(task, job_env)
    except (RuntimeUnavailable, RuntimeFailure) as err:
        obs.training_requests.labels("runtime_error").inc()
        tasks.set_status(db, task["id"], "failed", error=f"could not submit the Ray job: {clean(err)}")
        raise
    task = tasks.update_task(db, task["id"], {"ray_job_id": job_id})
    obs.training_requests.labels("accepted").inc()
    log.info("task %s submitted as Ray job %s by %s", task["id"], job_id, user.username)
    return {"id": task["id"], "status": task["status"]}


@router.get("", response_model=TaskPage)
def list_tasks(
    user: Viewer, db: DbDep, status: Annotated[TaskStatus | None, Query()] = None, skip: Skip = 0, limit: Limit = 50
) -> dict:
    page = tasks.list_tasks(db, status=status, skip=skip, limit=limit)
    return {"items": page.items, "total": page.total, "skip": skip, "limit": limit}


@router.get("/{task_id}", response_model=TaskPublic)
def get_task(task_id: TaskId, user: Viewer, db: DbDep) -> dict:
    return tasks.get_task(db, task_id)


@router.post("/{task_id}/cancel", response_model=TaskPublic, status_code=status.HTTP_202_ACCEPTED)
def cancel_task(task_id: TaskId, user: Operator, db: DbDep, runtime: RuntimeDep) -> dict:
    """Flag the task for cancellation and stop its Ray job; a task whose job has not started is cancelled at once,
    a running one is marked cancelled by its job (or the reconciler) once it stopped. 409 if already finished."""
    task = tasks.request_cancel(db, task_id)
    if task["status"] == "pending":
        try:
            task = tasks.set_status(db, task_id, "cancelled", error="cancelled before it started")
        except InvalidTransitionError:  # it started meanwhile: the job sees the flag
            task = tasks.get_task(db, task_id)
    if task.get("ray_job_id"):
        runtime.stop_job(task["ray_job_id"])
    return task


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_task(task_id: TaskId, user: Admin, db: DbDep) -> Response:
    """Delete a finished task and its metric points (its model, if any, stays). 409 while it is pending/running."""
    task = tasks.get_task(db, task_id)
    if task["status"] in tasks.ACTIVE:
        raise ConflictState(f"task {task_id} is {task['status']}: cancel it first")
    tasks.delete_task(db, task_id)
    metrics.delete_for(db, task_id=task_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{task_id}/logs", response_model=TaskLogs)
def task_logs(
    task_id: TaskId,
    user: Viewer,
    db: DbDep,
    runtime: RuntimeDep,
    tail: Annotated[int, Query(ge=1, le=10_000, description="last lines")] = 500,
) -> dict:
    """The Ray job's driver log (last ``tail`` lines, ANSI colour codes removed); empty before the job exists."""
    task = tasks.get_task(db, task_id)
    job_id = task.get("ray_job_id")
    if not job_id:
        return {"id": task_id, "ray_job_id": None, "logs": ""}
    text = _ANSI.sub("", runtime.job_logs(job_id))
    return {"id": task_id, "ray_job_id": job_id, "logs": "\n".join(text.splitlines()[-tail:])}


__all__ = ["ApiError", "router"]
