"""The Ray boundary of the REST API: what ``serve_app.api.main.create_api(settings, runtime)`` needs from a runtime.

The real implementation (``serve_app.runtime``) talks to Ray (``JobSubmissionClient``, Serve handles); the API
tests use a small in-memory one. The API owns MongoDB: it writes task/model/deployment documents itself and hands
the runtime plain documents (``dict`` with ``"id"`` as ``str``, ``ObjectId`` never leaks). The runtime never
raises a bare exception at the API: anything that goes wrong is :class:`RuntimeUnavailable` (mapped to HTTP 503)
or :class:`RuntimeFailure` (HTTP 502); both carry one clean line (no traceback, no ANSI codes).

Sync vs async: every method is synchronous (the API calls them from a worker thread) except :meth:`Runtime.predict`,
the hot path, which is a coroutine awaited on the ingress event loop (a Serve handle call is awaitable).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

#: Ray job states as ``ray.job_submission.JobStatus`` values
JobState = Literal["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]

#: one observation of the model's env: ``{"observations": float32 (obs_dim,), "action_mask": float32 (mask_dim,)}``
Observation = Mapping[str, np.ndarray]


class RuntimeUnavailable(Exception):
    """Ray / Serve is not reachable or not ready (HTTP 503). The message is one line, safe to show to a client."""


class RuntimeFailure(Exception):
    """The runtime answered but the operation failed (HTTP 502). One line, safe to show to a client."""


@runtime_checkable
class Runtime(Protocol):
    """The Ray side of the service as the API sees it."""

    def submit_training(self, task: Mapping[str, Any], secret_env: Mapping[str, str] | None = None) -> str:
        """Submit the Ray job that trains ``task`` (the stored task document; ``task["id"]`` is its id) and return
        the Ray job (submission) id. ``secret_env`` (e.g. ``WANDB_API_KEY``) goes only into the job's runtime
        environment: never into its entrypoint, metadata or the task. The job itself (``python -m
        serve_app.train_job --task-id <id>``) reads the task from MongoDB and writes progress, metrics and the model
        back; the API stores the returned id as the task's ``ray_job_id`` and leaves the task ``pending`` (the job /
        reconciler moves it on)."""
        ...

    def stop_job(self, job_id: str) -> None:
        """Ask Ray to stop the job. Idempotent: stopping a finished or unknown job is not an error."""
        ...

    def job_status(self, job_id: str) -> JobState | None:
        """The job's Ray status, or ``None`` when Ray does not know the job (e.g. lost with a restarted head)."""
        ...

    def job_logs(self, job_id: str) -> str:
        """The job's driver log so far ("" when there is none yet); raises :class:`RuntimeFailure` for an unknown
        job."""
        ...

    def deploy(self, deployment_id: str, model: Mapping[str, Any]) -> dict[str, Any]:
        """Make ``model`` (the stored model document: ``id``, ``env_id``, ``env_config``, artifact location, ...)
        servable under ``deployment_id`` and return runtime fields to keep in the deployment document (e.g. the
        multiplexed model id or the Serve application name; may be empty). The API writes the deployment document
        (with ``model_id`` and these fields) and passes it back to :meth:`predict` and :meth:`undeploy`."""
        ...

    def undeploy(self, deployment: Mapping[str, Any]) -> None:
        """Stop serving the deployment (the stored deployment document). Idempotent."""
        ...

    async def predict(self, deployment: Mapping[str, Any], observations: Sequence[Observation]) -> list[list[int]]:
        """The deployed policy's greedy action for each observation: one replica count per slot of the model's
        env (``len(action_mask)`` split by the env's ``nvec``), already validated by the API (right lengths,
        finite, in the observation box). The API checks the answer against the mask before returning it."""
        ...

    def status(self) -> dict[str, Any]:
        """Health of the Ray side for ``/health``: ``{"status": "ok" | "degraded", ...details}`` (e.g. ``"ray"``,
        ``"serve"``); anything but ``"ok"`` makes ``/health`` answer 503. Raises :class:`RuntimeUnavailable` when
        Ray is down."""
        ...
