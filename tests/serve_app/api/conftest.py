"""API-test fixtures: the real app of ``create_api`` on the session's nx-27017 server, driven through FastAPI's
``TestClient``, with an in-memory :class:`~serve_app.runtime_protocol.Runtime` at the Ray boundary (Ray-dependent
behaviour is covered by the end-to-end tests over real Ray)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pymongo.database import Database

from serve_app.api.main import create_api
from serve_app.runtime_protocol import Observation, RuntimeFailure, RuntimeUnavailable
from serve_app.security import issue_token
from serve_app.settings import Settings
from serve_app.store import models, users

PASSWORD = "password-for-tests"
TESTAPP_ENV = "lwmecps/TestApp4BS-v0"


class InMemoryRuntime:
    """Jobs and deployments in dicts. ``down`` makes every call raise RuntimeUnavailable; ``policy`` picks the
    action (default: per slot the largest count the mask allows)."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.deployed: dict[str, np.ndarray] = {}  # deployment id -> nvec
        self.down = False
        self.bad_actions = False
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if self.down:
            raise RuntimeUnavailable("Ray is not reachable at 127.0.0.1:6379")

    def submit_training(self, task: Mapping[str, Any], secret_env: Mapping[str, str] | None = None) -> str:
        self._check()
        job_id = f"raysubmit_{next(self._ids)}"
        logs = f"\x1b[32mINFO\x1b[0m training task {task['id']}\nline 2\nline 3\n"
        self.jobs[job_id] = {"task_id": task["id"], "state": "PENDING", "logs": logs, "env": dict(secret_env or {})}
        return job_id

    def stop_job(self, job_id: str) -> None:
        self._check()
        if job_id in self.jobs:
            self.jobs[job_id]["state"] = "STOPPED"

    def job_status(self, job_id: str) -> Any:
        self._check()
        return self.jobs[job_id]["state"] if job_id in self.jobs else None

    def job_logs(self, job_id: str) -> str:
        self._check()
        if job_id not in self.jobs:
            raise RuntimeFailure(f"job {job_id} does not exist")
        return str(self.jobs[job_id]["logs"])

    def deploy(self, deployment_id: str, model: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        from policies.rllib.registration import make_env

        env = make_env(str(model["env_id"]), dict(model.get("env_config") or {}))
        self.deployed[deployment_id] = np.asarray(env.action_space.nvec)
        env.close()
        return {"multiplexed_model_id": model["id"]}

    def undeploy(self, deployment: Mapping[str, Any]) -> None:
        self._check()
        self.deployed.pop(deployment["id"], None)

    async def predict(self, deployment: Mapping[str, Any], observations: Sequence[Observation]) -> list[list[int]]:
        self._check()
        nvec = self.deployed.get(deployment["id"])
        if nvec is None:
            raise RuntimeFailure(f"deployment {deployment['id']} is not served")
        out = []
        for obs in observations:
            parts = np.split(np.asarray(obs["action_mask"]), np.cumsum(nvec)[:-1])
            top = [int(np.flatnonzero(p > 0.5).max()) for p in parts]
            out.append([n + 5 for n in top] if self.bad_actions else top)
        return out

    def status(self) -> dict[str, Any]:
        self._check()
        return {"status": "ok", "ray": "in-memory"}


class Api:
    """A TestClient plus helpers to sign in as a role."""

    password = PASSWORD  # of the users as_role creates

    def __init__(self, client: TestClient, runtime: InMemoryRuntime, db: Database, settings: Settings):
        self.client, self.runtime, self.db, self.settings = client, runtime, db, settings
        self.admin = settings.admin_username
        assert settings.admin_password is not None
        self.admin_password = settings.admin_password.get_secret_value()
        self._tokens: dict[str, str] = {}

    def token(self, username: str, password: str) -> str:
        r = self.client.post("/api/v1/auth/token", data={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def as_role(self, role: str) -> dict[str, str]:
        """Authorization headers of a user with ``role`` (created on first use; the admin is the bootstrap one).
        The token is minted directly (the password flow itself is tested in test_api_auth.py): scrypt is slow."""
        if role not in self._tokens:
            name = self.admin if role == "admin" else f"{role}-user"
            if role != "admin":
                users.create_user(self.db, name, PASSWORD, role)
            self._tokens[role] = issue_token(name, role, self.settings)
        return {"Authorization": f"Bearer {self._tokens[role]}"}


@pytest.fixture
def runtime() -> InMemoryRuntime:
    return InMemoryRuntime()


@pytest.fixture
def api(settings: Settings, db: Database, runtime: InMemoryRuntime) -> Iterator[Api]:
    app = create_api(settings, runtime, db)
    with TestClient(app) as client:  # runs the lifespan: indexes and the bootstrap admin
        yield Api(client, runtime, db, settings)


@pytest.fixture
def make_model(db: Database, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Register a model of the testapp env as the training job does; ``export=True`` also writes a real (untrained)
    export of the right shapes; ``info`` overrides metadata fields."""
    counter = itertools.count()

    def make(export: bool = False, name: str = "m", info: dict[str, Any] | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"algorithm": "PPO", "env_id": TESTAPP_ENV, "env_config": {}, "metrics": {"r": -1.0}}
        fields |= info or {}
        if export:
            fields["export_uri"] = str(write_export(tmp_path / f"export{next(counter)}", fields["env_id"]))
        return models.register_model(db, name=name, type="ppo", artifact_uri=str(tmp_path / "art"), info=fields)

    return make


def write_export(out: Path, env_id: str) -> Path:
    """An export (weights + metadata) of a small random MLP over the env's spaces."""
    import torch
    from torch import nn

    from policies.rllib.export import write_export as write
    from policies.rllib.layout import ActionLayout
    from policies.rllib.registration import make_env

    env = make_env(env_id)
    obs_dim = int(env.observation_space["observations"].shape[0])
    nvec = tuple(int(n) for n in env.action_space.nvec)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(obs_dim, 16), nn.Tanh(), nn.Linear(16, sum(nvec)))
    spaces = {"observation_space": str(env.observation_space), "action_space": str(env.action_space)}
    env.close()
    return write(out, net, ActionLayout(obs_dim, nvec, False), algorithm="PPO", env_id=env_id, env_config={},
                 spaces=spaces)  # fmt: skip
