"""Models, deployments and predict through the API (in-memory runtime; the real policy path is the e2e test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from envs.dynamics import Dynamics
from envs.presets import get_scenario
from envs.world import build_world
from serve_app.store import deployments, models

Api = Any  # the conftest's Api
MakeModel = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def dyn() -> Dynamics:
    return Dynamics(build_world(get_scenario("testapp-4bs")))


def deploy(api: Api, model_id: str) -> str:
    r = api.client.post(f"/api/v1/models/{model_id}/deploy", headers=api.as_role("operator"))
    assert r.status_code == 201, r.text
    return str(r.json()["deployment_id"])


def test_list_get_filter_delete(api: Api, make_model: MakeModel) -> None:
    a, b = make_model(name="a"), make_model(name="b")
    models.mark_status(api.db, b["id"], "archived")
    viewer = api.as_role("viewer")
    page = api.client.get("/api/v1/models", headers=viewer).json()
    assert page["total"] == 2 and [m["name"] for m in page["items"]] == ["b", "a"]
    assert page["items"][1]["env_id"] == "lwmecps/TestApp4BS-v0" and page["items"][1]["algorithm"] == "PPO"
    only = api.client.get("/api/v1/models", params={"status": "ready", "type": "ppo"}, headers=viewer).json()
    assert [m["id"] for m in only["items"]] == [a["id"]]
    assert api.client.get("/api/v1/models", params={"status": "shiny"}, headers=viewer).status_code == 422
    assert api.client.get("/api/v1/models/xyz", headers=viewer).status_code == 422
    assert api.client.get(f"/api/v1/models/{'1' * 24}", headers=viewer).status_code == 404
    assert api.client.delete(f"/api/v1/models/{a['id']}", headers=api.as_role("operator")).status_code == 403
    assert api.client.delete(f"/api/v1/models/{a['id']}", headers=api.as_role("admin")).status_code == 204
    assert api.client.get(f"/api/v1/models/{a['id']}", headers=viewer).status_code == 404


def test_deploy_predict_undeploy(api: Api, make_model: MakeModel, dyn: Dynamics) -> None:
    model = make_model()
    dep_id = deploy(api, model["id"])
    operator = api.as_role("operator")
    got = api.client.get(f"/api/v1/deployments/{dep_id}", headers=api.as_role("viewer")).json()
    assert got["status"] == "running" and got["model_id"] == model["id"]
    assert api.client.get(f"/api/v1/models/{model['id']}", headers=operator).json()["status"] == "deployed"
    r = api.client.delete(f"/api/v1/models/{model['id']}", headers=api.as_role("admin"))
    assert r.status_code == 409 and "undeploy first" in r.json()["detail"]

    # a snapshot: the API builds the env's observation; the fake policy asks for the most each slot's mask allows
    placement = dyn.initial_placement()
    users = [3.0, 0.0, 7.0, 1.0]
    snapshot = {"slot": 5, "users": users, "placement": placement.tolist()}
    r = api.client.post(f"/api/v1/deployments/{dep_id}/predict", json=snapshot, headers=operator)
    assert r.status_code == 200, r.text
    obs = dyn.observe(placement[None], np.array([users]), np.array([5]), np.zeros((1, 1)))
    offsets = np.concatenate([[0], np.cumsum(dyn.nvec)[:-1]])
    want = [int(np.flatnonzero(p > 0.5).max()) for p in np.split(obs["action_mask"][0], offsets[1:])]
    repaired, _ = dyn.repair(placement[None], np.array([want]))
    assert r.json()["placement"] == repaired[0].tolist() and r.json()["model_id"] == model["id"]

    # the observation itself gives the raw action (within the mask)
    body = {"observations": obs["observations"][0].tolist(), "action_mask": obs["action_mask"][0].tolist()}
    r = api.client.post(f"/api/v1/deployments/{dep_id}/predict", json=body, headers=operator)
    assert r.status_code == 200 and r.json()["placement"] == want
    batch = api.client.post(f"/api/v1/deployments/{dep_id}/predict_batch", json={"items": [body, body]},
                            headers=operator).json()  # fmt: skip
    assert batch["placements"] == [want, want]

    r = api.client.delete(f"/api/v1/deployments/{dep_id}", headers=operator)
    assert r.status_code == 200 and r.json()["status"] == "stopped" and dep_id not in api.runtime.deployed
    assert api.client.get(f"/api/v1/models/{model['id']}", headers=operator).json()["status"] == "ready"
    r = api.client.post(f"/api/v1/deployments/{dep_id}/predict", json=body, headers=operator)
    assert r.status_code == 409 and r.json()["detail"] == f"deployment {dep_id} is stopped: it serves no predictions"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda b: b.update(observations=b["observations"][:-1]), "body.observations: expected 19 values"),
        (lambda b: b["observations"].__setitem__(2, 9.5), "body.observations[2]: 9.5 is outside the observation box"),
        (lambda b: b["observations"].__setitem__(0, "x"), "body.observations[0]: Input should be a valid number"),
        (lambda b: b["action_mask"].__setitem__(1, 0.5), "body.action_mask[1]: must be 0 or 1"),
        (lambda b: b.update(action_mask=[0.0] * len(b["action_mask"])), "body.action_mask: slot 0 allows no replica"),
        (lambda b: b.pop("action_mask"), "body.action_mask: field required"),
        (lambda b: b.update(extra=1), "body.extra: Extra inputs are not permitted"),
        (lambda b: b.clear() or b.update(slot=0, users=[1, 2, 3], placement=[1, 1, 1, 1]), "body.users: expected 4"),
        (lambda b: b.clear() or b.update(slot=99999, users=[1] * 4, placement=[1] * 4), "body.slot: must be < 8640"),
        (lambda b: b.clear() or b.update(slot=0, users=[1] * 4, placement=[9, 1, 1, 1]),
         "body.placement[0]: must be within [0, 4]"),
        (lambda b: b.clear() or b.update(slot=0, users=[-1, 1, 1, 1], placement=[1] * 4),
         "body.users[0]: must be >= 0"),
        (lambda b: b.clear() or b.update(slot=0, users=[1] * 4), "body.placement: field required"),
    ],
)  # fmt: skip
def test_invalid_observations_are_422(
    api: Api, make_model: MakeModel, dyn: Dynamics, change: Callable[[dict[str, Any]], Any], detail: str
) -> None:
    dep_id = deploy(api, make_model()["id"])
    obs = dyn.observe(dyn.initial_placement()[None], np.ones((1, 4)), np.array([0]), np.zeros((1, 1)))
    body: dict[str, Any] = {
        "observations": obs["observations"][0].tolist(),
        "action_mask": obs["action_mask"][0].tolist(),
    }
    change(body)
    r = api.client.post(f"/api/v1/deployments/{dep_id}/predict", json=body, headers=api.as_role("operator"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(detail), r.json()["detail"]


def test_nan_and_non_json_bodies_are_4xx(api: Api, make_model: MakeModel) -> None:
    dep_id = deploy(api, make_model()["id"])
    headers = {**api.as_role("operator"), "content-type": "application/json"}
    url = f"/api/v1/deployments/{dep_id}/predict"
    r = api.client.post(url, content=b'{"observations": [NaN], "action_mask": [1]}', headers=headers)
    assert r.status_code == 422 and "finite" in r.json()["detail"]
    r = api.client.post(url, content=b'{"observations": [1,', headers=headers)
    assert r.status_code == 422 and r.json()["detail"].startswith("body")


def test_policy_outside_mask_and_runtime_down(api: Api, make_model: MakeModel, dyn: Dynamics) -> None:
    dep_id = deploy(api, make_model()["id"])
    body = {"slot": 0, "users": [1.0] * 4, "placement": dyn.initial_placement().tolist()}
    api.runtime.bad_actions = True
    r = api.client.post(f"/api/v1/deployments/{dep_id}/predict", json=body, headers=api.as_role("operator"))
    assert (
        r.status_code == 502
        and r.json()["detail"] == "runtime error: the policy returned an action outside the action mask"
    )
    api.runtime.down = True
    r = api.client.post(f"/api/v1/deployments/{dep_id}/predict", json=body, headers=api.as_role("operator"))
    assert r.status_code == 503 and "Traceback" not in r.text
    r = api.client.post(f"/api/v1/models/{make_model()['id']}/deploy", headers=api.as_role("operator"))
    assert r.status_code == 503
    failed = deployments.list_deployments(api.db, status="failed").items
    assert len(failed) == 1 and failed[0]["error"] == "Ray is not reachable at 127.0.0.1:6379"


def test_deploy_refuses_unusable_models(api: Api, make_model: MakeModel) -> None:
    operator = api.as_role("operator")
    archived = make_model()
    models.mark_status(api.db, archived["id"], "archived")
    r = api.client.post(f"/api/v1/models/{archived['id']}/deploy", headers=operator)
    assert r.status_code == 409 and "archived" in r.json()["detail"]
    nowhere = make_model(info={"env_id": "x/Unknown-v0"})
    r = api.client.post(f"/api/v1/models/{nowhere['id']}/deploy", headers=operator)
    assert r.status_code == 409 and "its env is unknown" in r.json()["detail"]


def test_evaluate_runs_the_export(api: Api, make_model: MakeModel) -> None:
    model = make_model(export=True)
    operator = api.as_role("operator")
    r = api.client.post(f"/api/v1/models/{model['id']}/evaluate", json={"steps": 4, "baselines": ["static-1"]},
                        headers=operator)  # fmt: skip
    assert r.status_code == 200, r.text
    result = r.json()
    assert set(result["summary"]) == {"model", "static-1"} and result["steps"] == 4
    assert result["summary"]["model"]["mask_violations"]["mean"] == 0.0
    r = api.client.post(f"/api/v1/models/{model['id']}/evaluate", json={"scenario": "mars"}, headers=operator)
    assert r.status_code == 422 and r.json()["detail"].startswith("scenario: unknown scenario preset 'mars'")
    r = api.client.post(f"/api/v1/models/{model['id']}/evaluate", json={"scenario": "reference-city"}, headers=operator)
    assert r.status_code == 422 and "slots" in r.json()["detail"]
    r = api.client.post(f"/api/v1/models/{make_model()['id']}/evaluate", headers=operator)
    assert r.status_code == 409 and "no exported policy" in r.json()["detail"]


def test_swap_model_checks_then_switches(api: Api, make_model: MakeModel, dyn: Dynamics) -> None:
    old, new = make_model(name="old"), make_model(name="new")
    dep_id = deploy(api, old["id"])
    operator, url = api.as_role("operator"), f"/api/v1/deployments/{dep_id}"
    assert api.client.put(url, json={"model_id": new["id"]}, headers=api.as_role("viewer")).status_code == 403
    r = api.client.put(url, json={"model_id": "f" * 24}, headers=operator)
    assert r.status_code == 404 and "model" in r.json()["detail"], r.text
    r = api.client.put(f"/api/v1/deployments/{'e' * 24}", json={"model_id": new["id"]}, headers=operator)
    assert r.status_code == 404 and "deployment" in r.json()["detail"], r.text
    r = api.client.put(url, json={"model_id": "nope"}, headers=operator)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.model_id"), r.text
    city = make_model(name="city", info={"env_id": "lwmecps/ReferenceCity-v0"})
    r = api.client.put(url, json={"model_id": city["id"]}, headers=operator)
    assert r.status_code == 422 and r.json()["detail"].startswith(f"model_id: model {city['id']} acts on"), r.text
    assert deployments.get_deployment(api.db, dep_id)["model_id"] == old["id"]  # refused swaps change nothing

    r = api.client.put(url, json={"model_id": new["id"]}, headers=operator)
    assert r.status_code == 200, r.text
    assert r.json()["model_id"] == new["id"] and r.json()["previous_model_id"] == old["id"]
    assert [models.get_model(api.db, m["id"])["status"] for m in (old, new)] == ["ready", "deployed"]
    snapshot = {"slot": 5, "users": [3.0, 0.0, 7.0, 1.0], "placement": dyn.initial_placement().tolist()}
    r = api.client.post(f"{url}/predict", json=snapshot, headers=operator)
    assert r.status_code == 200 and r.json()["model_id"] == new["id"], r.text
    api.client.delete(url, headers=operator)
    r = api.client.put(url, json={"model_id": old["id"]}, headers=operator)
    assert r.status_code == 409 and "stopped" in r.json()["detail"], r.text
