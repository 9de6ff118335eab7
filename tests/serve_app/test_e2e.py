"""End to end over real HTTP: ``lwmecps serve`` (its own Ray head, Serve, the nx-27017 server) in a child process.

log in -> create a training task -> it is a Ray job -> progress -> completed -> model registered -> deploy ->
predict a valid placement -> metrics show the task -> undeploy; cancelling a running (Tune search) task stops its
Ray job within 30 s and marks it cancelled, and its W&B key travels only in the job's runtime env; swapping a
deployment's model while predicts keep coming fails none of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import httpx
import numpy as np
import pytest

import envs  # noqa: F401 - registers the env ids
from serve_app.service_process import TERMINAL, ServiceProcess, tiny_task, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ENV_ID = "lwmecps/TestApp4BS-v0"
NVEC = (5, 5, 5, 5)
WANDB_KEY = "fake-wandb-key-e2e-0123456789abcdef"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path_factory.mktemp("service"))
    with proc:
        yield proc


@pytest.fixture(scope="module")
def api(service: ServiceProcess) -> Iterator[httpx.Client]:
    client = service.client()
    yield client
    client.close()


def _jobs(service: ServiceProcess) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(service.dashboard)


def _task(api: httpx.Client, task_id: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/training/{task_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _observations(n: int) -> list[dict[str, np.ndarray]]:
    env = gym.make(ENV_ID)
    env.action_space.seed(3)
    obs, _ = env.reset(seed=3)
    seen = []
    for _ in range(n):
        seen.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    return seen


def test_train_deploy_predict_undeploy(service: ServiceProcess, api: httpx.Client) -> None:
    r = api.post("/api/v1/training", json=tiny_task("e2e", iterations=2))
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    task = wait_until(lambda: _task(api, task_id).get("ray_job_id") and _task(api, task_id), 30, "ray job id")
    job_id = task["ray_job_id"]
    listed = {j.submission_id: j for j in _jobs(service).list_jobs()}
    assert job_id in listed and listed[job_id].metadata.get("task_id") == task_id

    task = wait_until(lambda: (t := _task(api, task_id))["status"] in TERMINAL and t, 180, "task end", period_s=1)
    assert task["status"] == "completed", (task, service.log_tail())
    assert task["progress"] == 1.0 and task["iteration"] == 2
    jobs = _jobs(service)
    assert str(wait_until(lambda: (s := jobs.get_job_status(job_id)).is_terminal() and s, 30, "job end")) == "SUCCEEDED"
    series = api.get(f"/api/v1/metrics/tasks/{task_id}").json()
    progress = [p["values"]["progress"] for p in series["points"]]
    assert progress == [0.5, 1.0]  # one point per iteration, written while the job ran
    logs = api.get(f"/api/v1/training/{task_id}/logs").json()
    assert f"task {task_id}: completed" in logs["logs"]

    model = api.get(f"/api/v1/models/{task['model_id']}").json()
    assert model["task_id"] == task_id and model["status"] == "ready" and model["type"] == "ppo"

    r = api.post(f"/api/v1/models/{model['id']}/deploy")
    assert r.status_code == 201, r.text
    dep_id = r.json()["deployment_id"]
    for obs in _observations(5):
        r = api.post(
            f"/api/v1/deployments/{dep_id}/predict",
            json={"observations": obs["observations"].tolist(), "action_mask": obs["action_mask"].tolist()},
        )
        assert r.status_code == 200, r.text
        placement = r.json()["placement"]
        assert len(placement) == len(NVEC)
        offsets = np.concatenate([[0], np.cumsum(NVEC)[:-1]])
        assert all(obs["action_mask"][offsets[k] + n] > 0 for k, n in enumerate(placement))  # allowed by the mask

    summary = api.get("/api/v1/metrics/summary").json()
    assert summary["tasks_by_status"]["completed"] >= 1 and summary["predict"]["requests"] >= 5

    r = api.delete(f"/api/v1/deployments/{dep_id}")
    assert r.status_code in (200, 204), r.text
    r = api.post(
        f"/api/v1/deployments/{dep_id}/predict",
        json={"observations": obs["observations"].tolist(), "action_mask": obs["action_mask"].tolist()},
    )
    assert r.status_code in (404, 409), r.text


def test_cancel_stops_a_search_job_within_30s(service: ServiceProcess, api: httpx.Client) -> None:
    """A 2-trial Tune search with W&B offline and a per-task W&B key: the key is in the job's runtime env only;
    cancelling stops the job (both trials) within 30 s."""
    body = {**tiny_task("cancel-me", iterations=100_000), "num_samples": 2}
    body["wandb"] = {"mode": "offline", "api_key": WANDB_KEY}
    r = api.post("/api/v1/training", json=body)
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    wait_until(lambda: _task(api, task_id)["iteration"] >= 1, 180, "first iteration", period_s=1)
    task = _task(api, task_id)
    job_id = task["ray_job_id"]
    jobs = _jobs(service)
    info = jobs.get_job_info(job_id)
    assert info.runtime_env["env_vars"]["WANDB_API_KEY"] == WANDB_KEY
    assert WANDB_KEY not in info.entrypoint and WANDB_KEY not in str(info.metadata)
    assert task["wandb_run"]["mode"] == "offline" and 0 < task["progress"] < 1

    r = api.post(f"/api/v1/training/{task_id}/cancel")
    assert r.status_code == 202, r.text
    wait_until(lambda: jobs.get_job_status(job_id).is_terminal(), 30, "Ray job stopped")
    task = wait_until(lambda: (t := _task(api, task_id))["status"] in TERMINAL and t, 30, "task ended")
    assert task["status"] == "cancelled"
    assert str(jobs.get_job_status(job_id)) == "STOPPED"
    assert WANDB_KEY not in jobs.get_job_logs(job_id) and WANDB_KEY not in str(task)


def _ready_models(api: httpx.Client, n: int) -> list[dict[str, Any]]:
    """``n`` ready models of the testapp env (trains tiny ones when this module has not made enough yet)."""
    while len(ready := api.get("/api/v1/models", params={"status": "ready"}).json()["items"]) < n:
        task_id = api.post("/api/v1/training", json=tiny_task("another", iterations=1)).json()["id"]
        task = wait_until(lambda i=task_id: (t := _task(api, i))["status"] in TERMINAL and t, 180, "task end", 1)
        assert task["status"] == "completed", task
    return ready[:n]


def test_swap_model_without_failed_requests(service: ServiceProcess, api: httpx.Client) -> None:
    old, new = _ready_models(api, 2)
    r = api.post(f"/api/v1/models/{old['id']}/deploy")
    assert r.status_code == 201, r.text
    dep_id = r.json()["deployment_id"]
    obs = _observations(1)[0]
    body = {"observations": obs["observations"].tolist(), "action_mask": obs["action_mask"].tolist()}
    answers: list[tuple[float, int, str | None]] = []  # (start time, status, model that answered)
    stop = threading.Event()

    def fire() -> None:
        with service.client() as client:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = client.post(f"/api/v1/deployments/{dep_id}/predict", json=body)
                    answers.append((t0, r.status_code, r.json().get("model_id")))
                except httpx.HTTPError as e:
                    answers.append((t0, 0, repr(e)))

    thread = threading.Thread(target=fire)
    thread.start()
    try:
        wait_until(lambda: len(answers) >= 10, 30, "predicts before the swap", period_s=0.1)
        r = api.put(f"/api/v1/deployments/{dep_id}", json={"model_id": new["id"]})
        swapped = time.monotonic()
        wait_until(lambda: sum(t > swapped for t, _, _ in answers) >= 10, 30, "predicts after the swap", 0.1)
    finally:
        stop.set()
        thread.join(30)
    assert r.status_code == 200 and r.json()["model_id"] == new["id"], r.text
    failed = [a for a in answers if a[1] != 200]
    assert not failed, failed[:5]
    assert {m for t, _, m in answers if t > swapped} == {new["id"]}
    assert answers[0][2] == old["id"]
    r = api.delete(f"/api/v1/deployments/{dep_id}")
    assert r.status_code in (200, 204), r.text
