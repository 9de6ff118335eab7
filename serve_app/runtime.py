"""The real :class:`~serve_app.runtime_protocol.Runtime`: Ray jobs through ``JobSubmissionClient``, predictions
through the multiplexed :class:`~serve_app.deployments.policy.PolicyServer` (or, with ``predict_in_ingress``, the
exported policy loaded in the ingress replica itself: one process hop fewer; see ``docs/service.md``).

Nothing from Ray reaches the API raw: errors become :class:`RuntimeUnavailable` / :class:`RuntimeFailure` with one
clean line (the ``.cause`` of a replica's ``RayTaskError``; never its traceback or ANSI codes).
"""

from __future__ import annotations

import re
import secrets
import shlex
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serve_app.runtime_protocol import JobState, Observation, RuntimeFailure, RuntimeUnavailable

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: most recent bytes of a job's log returned by job_logs
MAX_LOG_CHARS = 200_000
LOCAL_MODELS = 8
#: how long a submission waits for a freshly started node's job agent
SUBMIT_RETRY_S = 30.0


def clean_line(err: BaseException) -> str:
    """One client-safe line for an exception: the remote cause of a Ray task error, no traceback, no ANSI."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and cause is not err:
        return clean_line(cause)
    lines = [ln.strip() for ln in _ANSI.sub("", str(err)).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "ray::", "^"))]
    text = lines[0] if lines else type(err).__name__
    return text[:300]


def job_entrypoint(task_id: str) -> str:
    """The shell command of a training job (this interpreter, so the job sees the same packages)."""
    return f"{shlex.quote(sys.executable)} -m serve_app.train_job --task-id {shlex.quote(task_id)}"


def stack(observations: Sequence[Observation]) -> dict[str, np.ndarray]:
    """Observations as one batch ``{"observations": (B, D), "action_mask": (B, M)}`` (float32)."""
    return {k: np.stack([np.asarray(o[k], dtype=np.float32) for o in observations]) for k in observations[0]}


def serve_model_id(deployment: Mapping[str, Any]) -> str:
    """The multiplexed model id of a deployment document (what :meth:`RayRuntime.deploy` returned, under
    ``config``), falling back to its model id."""
    config = deployment.get("config") or {}
    return str(config.get("serve_model_id") or deployment.get("serve_model_id") or deployment["model_id"])


class RayRuntime:
    """Jobs on the Ray cluster this process is connected to; predictions from Serve replicas."""

    def __init__(
        self,
        *,
        policy: Any = None,
        storage_root: str,
        job_env: Mapping[str, str] | None = None,
        dashboard_address: str | None = None,
        entrypoint_num_cpus: float = 0.0,
        predict_in_ingress: bool = False,
    ):
        self._policy = policy  # DeploymentHandle of PolicyServer (None: predict in this process)
        self._root = storage_root
        self._job_env = dict(job_env or {})
        self._address = dashboard_address
        self._cpus = entrypoint_num_cpus
        self._local = predict_in_ingress or policy is None
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._client: Any = None

    # -- jobs --------------------------------------------------------------------------------------------------

    def _jobs(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self._address)
            except Exception as e:
                raise RuntimeUnavailable(f"Ray job server not reachable: {clean_line(e)}") from None
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConnectionError, OSError) as e:
            raise RuntimeUnavailable(f"Ray job server not reachable ({what}): {clean_line(e)}") from None
        except Exception as e:
            raise RuntimeFailure(f"{what}: {clean_line(e)}") from None

    def submit_training(self, task: Mapping[str, Any], secret_env: Mapping[str, str] | None = None) -> str:
        task_id = str(task["id"])
        client = self._jobs()
        deadline = time.monotonic() + SUBMIT_RETRY_S
        while True:
            try:
                return str(
                    self._call(
                        "submit",
                        client.submit_job,
                        entrypoint=job_entrypoint(task_id),
                        submission_id=f"lwmecps-train-{task_id}-{secrets.token_hex(3)}",
                        runtime_env={"env_vars": {**self._job_env, **_cluster_env(), **(secret_env or {})}},
                        metadata={"task_id": task_id, "task_name": str(task.get("name") or "")[:100]},
                        entrypoint_num_cpus=self._cpus,
                    )
                )
            except RuntimeFailure as e:  # a node's job agent answers a few seconds after the node starts
                if "No available agent" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def stop_job(self, job_id: str) -> None:
        client = self._jobs()
        try:
            client.stop_job(job_id)
        except (ConnectionError, OSError) as e:
            raise RuntimeUnavailable(f"Ray job server not reachable (stop): {clean_line(e)}") from None
        except Exception:  # unknown or already finished: stopping is idempotent
            pass

    def job_status(self, job_id: str) -> JobState | None:
        client = self._jobs()
        try:
            return str(client.get_job_status(job_id).value)  # type: ignore[return-value]
        except (ConnectionError, OSError) as e:
            raise RuntimeUnavailable(f"Ray job server not reachable (status): {clean_line(e)}") from None
        except Exception as e:
            if "does not exist" in str(e) or "404" in str(e):
                return None
            raise RuntimeFailure(f"status of job {job_id}: {clean_line(e)}") from None

    def job_logs(self, job_id: str) -> str:
        logs = str(self._call(f"logs of job {job_id}", self._jobs().get_job_logs, job_id))
        return _ANSI.sub("", logs[-MAX_LOG_CHARS:])

    # -- deployed policies -------------------------------------------------------------------------------------

    def _model(self, model_id: str) -> Any:
        """The exported policy loaded in this process (LRU of LOCAL_MODELS)."""
        from serve_app.deployments.policy import ModelNotFound, load_policy

        policy = self._models.pop(model_id, None)
        if policy is None:
            try:
                policy = load_policy(self._root, model_id)
            except ModelNotFound as e:
                raise RuntimeFailure(str(e)) from None
        self._models[model_id] = policy
        while len(self._models) > LOCAL_MODELS:
            self._models.popitem(last=False)
        return policy

    def deploy(self, deployment_id: str, model: Mapping[str, Any]) -> dict[str, Any]:
        """Warm the model where it will serve (a policy replica, or this process) and check it loads."""
        from serve_app.deployments.policy import describe_policy

        model_id = str(model["id"])
        if self._local:
            info = describe_policy(self._model(model_id))
        else:
            try:
                info = self._policy.options(multiplexed_model_id=model_id).describe.remote().result(timeout_s=120)
            except Exception as e:
                raise RuntimeFailure(f"deploy of model {model_id}: {clean_line(e)}") from None
        return {"serve_model_id": model_id, "policy": info}

    def undeploy(self, deployment: Mapping[str, Any]) -> None:
        """Nothing to tear down: a replica drops an unused model from its LRU; this process drops it at once."""
        self._models.pop(serve_model_id(deployment), None)

    async def predict(self, deployment: Mapping[str, Any], observations: Sequence[Observation]) -> list[list[int]]:
        model_id = serve_model_id(deployment)
        batch = stack(observations)
        if self._local:
            actions = self._model(model_id).greedy(batch)
        else:
            try:
                actions = await self._policy.options(multiplexed_model_id=model_id).remote(batch)
            except Exception as e:
                raise _replica_error(e) from None
        return np.asarray(actions, dtype=np.int64).tolist()

    def status(self) -> dict[str, Any]:
        import ray

        if not ray.is_initialized():
            raise RuntimeUnavailable("Ray is not initialised in this process")
        return {"ray": "ok", "predict": "ingress" if self._local else "policy replicas"}


def _cluster_env() -> dict[str, str]:
    """``LWMECPS_RAY_ADDRESS``: this cluster's GCS address for the job's driver. Ray gives a driver the address of
    the last cluster started on its machine (``/tmp/ray/ray_current_cluster``), which is another one when several
    Ray clusters share the machine."""
    import ray

    return {"LWMECPS_RAY_ADDRESS": ray.get_runtime_context().gcs_address} if ray.is_initialized() else {}


def _replica_error(e: BaseException) -> Exception:
    """A Serve/Ray error of a predict call as our error: unavailable (overload, no replica) or failure."""
    from ray import exceptions as rex
    from ray.serve import exceptions as sex

    unavailable = (sex.BackPressureError, sex.DeploymentUnavailableError, rex.ActorUnavailableError)
    if isinstance(e, unavailable) or isinstance(getattr(e, "cause", None), unavailable):
        return RuntimeUnavailable(f"policy replicas unavailable: {clean_line(e)}")
    return RuntimeFailure(clean_line(e))
