"""Training tasks through the API: validation (422 with the field named), the stored task, listing, cancel,
delete, logs, and runtime errors mapped to 503."""

from __future__ import annotations

from typing import Any

import pytest

from serve_app.security import decrypt
from serve_app.store import tasks

Api = Any  # the conftest's Api
TINY = {
    "name": "tiny",
    "nodes": [
        {"name": "a", "x_km": 0, "y_km": 0, "cpu": 2, "ram_mib": 2048},
        {"name": "b", "x_km": 1, "y_km": 0, "cpu": 2, "ram_mib": 2048},
    ],
    "services": [{"name": "s", "cpu": 0.5, "ram_mib": 256, "rate": 10, "max_replicas": 2}],
    "demand": {"base_users": 20},
}
KEY = "wandb-key-0123456789abcdef"


def create(api: Api, body: dict[str, Any], role: str = "operator") -> Any:
    return api.client.post("/api/v1/training", json=body, headers=api.as_role(role))


def test_preset_task_is_stored_and_submitted(api: Api) -> None:
    r = create(api, {"name": "ppo run", "preset": "testapp-ppo", "stop": {"training_iteration": 2}, "seed": 3})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    task_id = r.json()["id"]
    got = api.client.get(f"/api/v1/training/{task_id}", headers=api.as_role("viewer")).json()
    assert got["preset"] == "testapp-ppo" and got["algorithm"] == "PPO" and got["env_id"] == "lwmecps/TestApp4BS-v0"
    assert got["stop"] == {"training_iteration": 2.0} and got["seed"] == 3 and got["owner"] == "operator-user"
    assert got["ray_job_id"] in api.runtime.jobs and api.runtime.jobs[got["ray_job_id"]]["task_id"] == task_id
    assert got["progress"] == 0.0 and got["wandb"] == {"mode": "offline", "project": None, "has_api_key": False}


def test_algorithm_with_scenario_preset_and_inline_scenario(api: Api) -> None:
    body = {"name": "a", "algorithm": "PPO", "scenario": "testapp-4bs", "hparams": {"lr": 0.001, "gamma": 0.9},
            "stop": {"training_iteration": 1}}  # fmt: skip
    r = create(api, body)
    assert r.status_code == 202, r.text
    got = api.client.get(f"/api/v1/training/{r.json()['id']}", headers=api.as_role("viewer")).json()
    assert got["env_id"] == "lwmecps/TestApp4BS-v0" and got["env_config"] == {"scenario": "testapp-4bs"}
    assert got["hparams"] == {"lr": 0.001, "gamma": 0.9}

    r = create(api, {**body, "scenario": TINY, "traces": [0, 1]})
    assert r.status_code == 202, r.text
    got = api.client.get(f"/api/v1/training/{r.json()['id']}", headers=api.as_role("viewer")).json()
    assert got["env_config"]["scenario"]["name"] == "tiny" and got["env_config"]["traces"] == [0, 1]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"preset": "nope"}, "preset: unknown preset 'nope' (known: testapp-ppo"),
        ({"algorithm": "A3C", "scenario": "testapp-4bs"}, "algorithm: unknown algorithm 'A3C' (known: PPO"),
        ({"algorithm": "PPO", "scenario": "atlantis"}, "scenario: unknown scenario preset 'atlantis'"),
        ({}, "body.preset: give exactly one of 'preset' or 'algorithm'"),
        ({"preset": "testapp-ppo", "algorithm": "PPO"}, "body.preset: give exactly one"),
        ({"algorithm": "PPO"}, "body.scenario: 'algorithm' needs a scenario"),
        ({"preset": "testapp-ppo", "scenario": "testapp-4bs"}, "body.scenario: a preset fixes its env"),
        ({"preset": "testapp-ppo", "hparams": {"lr": "fast"}}, "hparams.lr: expected float for PPO, got str 'fast'"),
        ({"preset": "testapp-ppo", "hparams": {"warp": 9}}, "hparams.warp: unknown hyperparameter for PPO"),
        ({"preset": "testapp-ppo", "stop": {"forever": 1}}, "stop.forever: unknown stop criterion"),
        ({"preset": "testapp-ppo", "stop": {"training_iteration": -1}}, "stop.training_iteration: must be > 0"),
        ({"algorithm": "PPO", "scenario": "testapp-4bs"}, "stop: a task without a preset needs at least one stop"),
        ({"algorithm": "PPO", "scenario": "testapp-4bs", "env_id": "x/Y-v0", "stop": {"training_iteration": 1}},
         "env_id: unknown env id 'x/Y-v0'"),
        ({"algorithm": "PPO", "scenario": {**TINY, "nodes": []}, "stop": {"training_iteration": 1}},
         "scenario.nodes: List should have at least 1 item"),
        ({"algorithm": "PPO", "scenario": {**TINY, "demand": {"kind": "profile", "profiles": {"A": "/etc/passwd"},
          "default_profile": "A"}}, "stop": {"training_iteration": 1}}, "scenario.demand.kind: an inline scenario"),
        ({"algorithm": "PPO", "scenario": {**TINY, "base_dir": "/"}, "stop": {"training_iteration": 1}},
         "scenario.base_dir: not allowed"),
        ({"algorithm": "PPO", "scenario": "testapp-4bs", "traces": ["Z"], "stop": {"training_iteration": 1}},
         "demand.profiles: unknown profile 'Z'"),
        ({"preset": "testapp-ppo", "search_space": {"lr": {"type": "loguniform", "lower": 0, "upper": 1}}},
         "body.search_space.lr.loguniform: loguniform needs lower > 0"),
        ({"preset": "testapp-ppo", "search_space": {"lr": {"type": "normal"}}}, "body.search_space.lr: "),
        ({"preset": "testapp-ppo", "hparams": {"lr": 0.1}, "search_space": {"lr": {"type": "choice", "values": [1]}}},
         "search_space.lr: also fixed in hparams"),
        ({"preset": "testapp-ppo", "search_space": {"warp": {"type": "choice", "values": [1, 2]}}},
         "hparams.warp: unknown hyperparameter"),
        ({"preset": "testapp-ppo", "wandb": {"mode": "loud"}}, "body.wandb.mode: "),
        ({"preset": "testapp-ppo", "hparams": {"train_batch_size": 100, "minibatch_size": 500}},
         "hparams: `minibatch_size` (500) must be <="),
        ({"preset": "testapp-ppo", "search_space": {"minibatch_size": {"type": "grid_search", "values": [8000, 50]}}},
         "hparams: `minibatch_size` (8000) must be <="),
        ({"preset": "testapp-ppo", "wandb": {"mode": "online"}}, "wandb.api_key: online mode needs an API key"),
        ({"preset": "testapp-ppo-search", "num_samples": 11}, "search_space: 66 trials (grid points x num_samples)"),
        ({"preset": "testapp-ppo", "num_samples": 9, "search_space": {"lr": {"type": "grid_search", "values": [
          0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}}}, "search_space: 72 trials (grid points x num_samples) is over"),
        ({"preset": "testapp-ppo", "surprise": True}, "body.surprise: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_requests_are_422_naming_the_field(api: Api, body: dict[str, Any], detail: str) -> None:
    r = create(api, {"name": "bad", **body})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(detail), r.json()["detail"]
    assert tasks.list_tasks(api.db).total == 0 and not api.runtime.jobs


def test_wandb_key_is_write_only_and_encrypted(api: Api) -> None:
    body = {"name": "w", "preset": "testapp-ppo", "wandb": {"mode": "online", "project": "lw", "api_key": KEY}}
    r = create(api, body)
    assert r.status_code == 202 and KEY not in r.text
    task_id = r.json()["id"]
    viewer = api.as_role("viewer")
    for path in [f"/api/v1/training/{task_id}", "/api/v1/training"]:
        got = api.client.get(path, headers=viewer)
        assert KEY not in got.text and "secrets" not in got.text
    assert api.client.get(f"/api/v1/training/{task_id}", headers=viewer).json()["wandb"] == {
        "mode": "online", "project": "lw", "has_api_key": True
    }  # fmt: skip
    raw = api.db["tasks"].find_one({})
    assert KEY not in str({k: v for k, v in raw.items() if k != "secrets"})
    cipher = tasks.get_secret(api.db, task_id, "wandb_api_key")
    assert cipher is not None and KEY not in cipher and decrypt(cipher, api.settings) == KEY
    (job,) = api.runtime.jobs.values()  # the job gets the key in its runtime environment only
    assert job["task_id"] == task_id and job["env"] == {"WANDB_API_KEY": KEY}


def test_list_filter_and_paginate(api: Api) -> None:
    ids = [create(api, {"name": f"t{i}", "preset": "testapp-ppo"}).json()["id"] for i in range(5)]
    tasks.set_status(api.db, ids[0], "running")
    tasks.set_status(api.db, ids[1], "running")
    viewer = api.as_role("viewer")
    page = api.client.get("/api/v1/training", params={"skip": 1, "limit": 2}, headers=viewer).json()
    assert page["total"] == 5 and page["skip"] == 1 and page["limit"] == 2
    assert [t["name"] for t in page["items"]] == ["t3", "t2"]  # newest first
    running = api.client.get("/api/v1/training", params={"status": "running"}, headers=viewer).json()
    assert running["total"] == 2 and {t["id"] for t in running["items"]} == set(ids[:2])
    for params in [{"status": "sleeping"}, {"limit": 0}, {"limit": 10_000}, {"skip": -1}, {"limit": "many"}]:
        r = api.client.get("/api/v1/training", params=params, headers=viewer)
        assert r.status_code == 422 and r.json()["detail"].startswith(f"query.{next(iter(params))}:"), r.json()


def test_cancel_delete_and_logs(api: Api) -> None:
    operator, admin = api.as_role("operator"), api.as_role("admin")
    pending = create(api, {"name": "p", "preset": "testapp-ppo"}).json()["id"]
    running = create(api, {"name": "r", "preset": "testapp-ppo"}).json()["id"]
    tasks.set_status(api.db, running, "running")

    r = api.client.post(f"/api/v1/training/{pending}/cancel", headers=operator)
    assert r.status_code == 202 and r.json()["status"] == "cancelled" and r.json()["cancel_requested"]
    assert api.runtime.jobs[r.json()["ray_job_id"]]["state"] == "STOPPED"
    r = api.client.post(f"/api/v1/training/{running}/cancel", headers=operator)
    assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["cancel_requested"]
    assert api.runtime.jobs[r.json()["ray_job_id"]]["state"] == "STOPPED"
    again = api.client.post(f"/api/v1/training/{pending}/cancel", headers=operator)
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]

    r = api.client.delete(f"/api/v1/training/{running}", headers=admin)
    assert r.status_code == 409 and r.json()["detail"] == f"task {running} is running: cancel it first"
    logs = api.client.get(f"/api/v1/training/{running}/logs", params={"tail": 2}, headers=operator).json()
    assert logs["logs"] == "line 2\nline 3" and logs["ray_job_id"]
    full = api.client.get(f"/api/v1/training/{running}/logs", headers=operator).json()["logs"]
    assert full.startswith("INFO training task") and "\x1b" not in full
    assert api.client.delete(f"/api/v1/training/{pending}", headers=admin).status_code == 204
    assert api.client.get(f"/api/v1/training/{pending}", headers=admin).status_code == 404


@pytest.mark.parametrize("suffix", ["", "/logs", "/cancel"])
def test_malformed_id_is_422_unknown_id_is_404(api: Api, suffix: str) -> None:
    method = "POST" if suffix == "/cancel" else "GET"
    headers = api.as_role("operator")
    bad = api.client.request(method, f"/api/v1/training/not-an-id{suffix}", headers=headers)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("path.task_id:")
    unknown = api.client.request(method, f"/api/v1/training/{'ab' * 12}{suffix}", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["detail"] == f"task {'ab' * 12} not found"


def test_runtime_down_is_503_and_the_task_fails(api: Api) -> None:
    api.runtime.down = True
    r = create(api, {"name": "x", "preset": "testapp-ppo"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["detail"] == "runtime unavailable: Ray is not reachable at 127.0.0.1:6379"
    [task] = tasks.list_tasks(api.db).items
    assert task["status"] == "failed" and "could not submit the Ray job" in task["error"]
