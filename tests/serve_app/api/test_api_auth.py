"""Authentication (OAuth2 password flow, JWT), roles, and user management."""

from __future__ import annotations

from typing import Any

import pytest

from serve_app.security import issue_token

ADMIN = "admin"
PASSWORD = "password-for-tests"
Api = Any  # the conftest's Api


def test_token_then_me(api: Api) -> None:
    r = api.client.post("/api/v1/auth/token", data={"username": ADMIN, "password": api.admin_password})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == api.settings.jwt_ttl_s
    me = api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == ADMIN and me.json()["role"] == "admin"
    assert "password_hash" not in me.json()


def test_wrong_password_and_unknown_user_are_401(api: Api) -> None:
    for user, password in [(ADMIN, "not-the-password"), ("nobody", "whatever-pass")]:
        r = api.client.post("/api/v1/auth/token", data={"username": user, "password": password})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["detail"] == "wrong username or password"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic YWRtaW46eA=="}],
    ids=["none", "garbage", "basic"],
)
def test_unauthenticated_is_401_with_challenge(api: Api, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/api/v1/training"), ("POST", "/api/v1/training"), ("GET", "/api/v1/users/me")]:
        r = api.client.request(method, path, headers=headers)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_expired_and_foreign_tokens_are_401(api: Api) -> None:
    expired = issue_token(ADMIN, "admin", api.settings, ttl_s=-10)
    r = api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["detail"] == "token expired"
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    foreign = api.settings.model_copy(update={"jwt_secret": None})
    foreign.jwt_secret = type(api.settings.jwt_secret)("another-secret-another-secret-another-secret")  # type: ignore[misc]
    r = api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {issue_token(ADMIN, 'admin', foreign)}"})
    assert r.status_code == 401 and r.json()["detail"].startswith("invalid token")


def test_roles_viewer_operator_admin(api: Api) -> None:
    viewer, operator, admin = api.as_role("viewer"), api.as_role("operator"), api.as_role("admin")
    assert api.client.get("/api/v1/training", headers=viewer).status_code == 200
    body = {"name": "t", "preset": "testapp-ppo"}
    r = api.client.post("/api/v1/training", json=body, headers=viewer)
    assert r.status_code == 403
    assert r.json()["detail"] == "forbidden: this needs the operator role (you are viewer)"
    assert api.client.get("/api/v1/users", headers=operator).status_code == 403
    assert api.client.get("/api/v1/users", headers=admin).status_code == 200
    fake = "0" * 24
    assert api.client.delete(f"/api/v1/training/{fake}", headers=operator).status_code == 403
    assert api.client.delete(f"/api/v1/training/{fake}", headers=admin).status_code == 404


def test_user_admin_lifecycle(api: Api) -> None:
    admin = api.as_role("admin")
    r = api.client.post("/api/v1/users", json={"username": "alice", "password": PASSWORD}, headers=admin)
    assert r.status_code == 201 and r.json()["role"] == "viewer" and "password" not in r.json()
    dup = api.client.post("/api/v1/users", json={"username": "alice", "password": PASSWORD}, headers=admin)
    assert dup.status_code == 409 and "taken" in dup.json()["detail"]
    alice = {"Authorization": f"Bearer {api.token('alice', PASSWORD)}"}
    assert api.client.get("/api/v1/models", headers=alice).status_code == 200
    assert api.client.post("/api/v1/models/" + "0" * 24 + "/deploy", headers=alice).status_code == 403

    r = api.client.patch("/api/v1/users/alice", json={"role": "operator"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "operator"
    # the stored role counts, not the one in the token: alice's old token now deploys (404: no such model)
    assert api.client.post("/api/v1/models/" + "0" * 24 + "/deploy", headers=alice).status_code == 404

    listing = api.client.get("/api/v1/users", params={"limit": 1}, headers=admin).json()
    assert listing["total"] == 2 and len(listing["items"]) == 1 and listing["limit"] == 1
    assert api.client.delete("/api/v1/users/alice", headers=admin).status_code == 204
    assert api.client.get("/api/v1/users/me", headers=alice).status_code == 401  # deleted user, valid token
    assert api.client.delete("/api/v1/users/alice", headers=admin).status_code == 404


def test_admin_cannot_lock_themselves_out(api: Api) -> None:
    admin = api.as_role("admin")
    r = api.client.delete(f"/api/v1/users/{ADMIN}", headers=admin)
    assert r.status_code == 409 and "yourself" in r.json()["detail"]
    r = api.client.patch(f"/api/v1/users/{ADMIN}", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 409


def test_user_input_errors(api: Api) -> None:
    admin = api.as_role("admin")
    cases = [
        ({"username": "bob", "password": "s3cr3t"}, "body.password"),
        ({"username": "bad name!", "password": PASSWORD}, "body.username"),
        ({"username": "bob", "password": PASSWORD, "role": "root"}, "body.role"),
        ({"username": "bob", "password": PASSWORD, "extra": 1}, "body.extra"),
    ]
    for body, field in cases:
        r = api.client.post("/api/v1/users", json=body, headers=admin)
        assert r.status_code == 422, body
        assert r.json()["detail"].startswith(field + ":"), r.json()
        assert "s3cr3t" not in str(r.json())  # the offending input (a password) is never echoed
    r = api.client.patch("/api/v1/users/bob", json={}, headers=admin)
    assert r.status_code == 422 and "at least one of role, password" in r.json()["detail"]
