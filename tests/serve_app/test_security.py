"""Passwords, JWTs, roles, Fernet at rest, admin bootstrap, settings secrets, and redaction in logs."""

from __future__ import annotations

import io
import json
import logging
import stat

import jwt
import pytest
from bson import ObjectId, json_util
from pydantic import SecretStr

from serve_app import security
from serve_app.logging import RedactFilter, configure_logging
from serve_app.settings import Settings
from serve_app.store import tasks, users


def test_password_hash_verifies_only_the_right_password():
    h1, h2 = security.hash_password("s3cret pass"), security.hash_password("s3cret pass")
    assert h1 != h2  # fresh salt each time
    assert "s3cret" not in h1
    assert security.verify_password("s3cret pass", h1) and security.verify_password("s3cret pass", h2)
    assert not security.verify_password("s3cret pasS", h1)
    assert not security.verify_password("s3cret pass", "garbage")
    assert not security.verify_password("s3cret pass", "bcrypt$1$2$3$4$5")


def test_roles_are_ordered():
    matrix = {(u, n): security.has_role(u, n) for u in security.ROLES for n in security.ROLES}
    assert [n for (u, n), ok in matrix.items() if u == "viewer" and ok] == ["viewer"]
    assert [n for (u, n), ok in matrix.items() if u == "operator" and ok] == ["viewer", "operator"]
    assert [n for (u, n), ok in matrix.items() if u == "admin" and ok] == list(security.ROLES)
    assert not security.has_role("root", "viewer")
    with pytest.raises(ValueError, match="role must be one of"):
        security.has_role("admin", "superuser")


def test_jwt_round_trip_and_rejections(tmp_path):
    settings = Settings.explicit(data_dir=tmp_path, jwt_ttl_s=60)
    token = security.issue_token("ann", "operator", settings)
    claims = security.verify_token(token, settings)
    assert claims["sub"] == "ann" and claims["role"] == "operator" and claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"

    expired = security.issue_token("ann", "operator", settings, ttl_s=-10)
    with pytest.raises(security.TokenError, match="expired"):
        security.verify_token(expired, settings)

    header, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        json.dumps({**claims, "role": "admin"}).encode()
    ).decode()  # same signature, elevated role
    for tampered in (f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.{signature[:-3]}abc", "x.y.z", ""):
        with pytest.raises(security.TokenError, match="invalid token"):
            security.verify_token(tampered, settings)

    other = Settings.explicit(data_dir=tmp_path / "other")
    with pytest.raises(security.TokenError, match="invalid token"):
        security.verify_token(token, other)
    unsigned = jwt.encode({"sub": "ann", "role": "admin", "exp": claims["exp"]}, None, algorithm="none")
    with pytest.raises(security.TokenError):
        security.verify_token(unsigned, settings)
    no_role = jwt.encode({"sub": "ann", "exp": claims["exp"]}, settings.jwt_key(), algorithm="HS256")
    with pytest.raises(security.TokenError, match="role"):
        security.verify_token(no_role, settings)


def test_fernet_round_trip_and_ciphertext_at_rest(db, settings):
    wandb_key = "wandb-key-0123456789abcdef0123456789abcdef"
    cipher = security.encrypt(wandb_key, settings)
    assert wandb_key not in cipher
    assert security.decrypt(cipher, settings) == wandb_key
    with pytest.raises(security.DecryptError):
        security.decrypt(cipher, Settings.explicit(data_dir=settings.data_dir / "elsewhere"))
    with pytest.raises(security.DecryptError):
        security.decrypt(cipher[:-4] + "AAAA", settings)

    task = tasks.create_task(db, {"name": "with key", "wandb": {"project": "p"}}, secrets={"wandb_api_key": cipher})
    stored = json_util.dumps(db.tasks.find_one({"_id": ObjectId(task["id"])}))
    assert wandb_key not in stored and cipher in stored
    assert "secrets" not in tasks.get_task(db, task["id"])
    assert security.decrypt(tasks.get_secret(db, task["id"], "wandb_api_key") or "", settings) == wandb_key


def test_settings_generate_and_persist_private_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("LWMECPS_MONGODB_URI", "mongodb://from-env:1/")
    monkeypatch.setenv("LWMECPS_JWT_TTL_S", "120")
    first = Settings(data_dir=tmp_path)
    assert first.mongodb_uri == "mongodb://from-env:1/" and first.jwt_ttl_s == 120  # the environment is read
    for name in ("jwt_secret", "fernet_key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    second = Settings.explicit(data_dir=tmp_path)
    assert second.mongodb_uri is None and second.jwt_ttl_s == 3600  # explicit() ignores the environment
    assert second.jwt_key() == first.jwt_key() and second.fernet_secret() == first.fernet_secret()
    assert first.jwt_key() not in repr(first) and first.fernet_secret() not in repr(first)
    given = Settings.explicit(data_dir=tmp_path, jwt_secret="given-secret")
    assert given.jwt_key() == "given-secret"
    assert second.storage_root == str(tmp_path / "storage") and second.local_storage == tmp_path / "storage"
    assert Settings.explicit(data_dir=tmp_path, storage_root="s3://bucket/x").local_storage is None
    with pytest.raises(ValueError, match="port"):
        Settings.explicit(data_dir=tmp_path, port=0)


def test_admin_bootstrap_is_idempotent(db, settings):
    first = security.bootstrap_admin(db, settings)
    assert first.created and first.password_file is None
    assert security.bootstrap_admin(db, settings).created is False
    users.update_role(db, settings.admin_username, "viewer")  # an admin's later changes are kept
    assert security.bootstrap_admin(db, settings).created is False
    assert users.get_user(db, settings.admin_username)["role"] == "viewer"
    assert users.list_users(db).total == 1
    assert users.authenticate(db, "admin", settings.admin_password.get_secret_value()) is not None


def test_admin_bootstrap_generates_a_private_password(db, tmp_path):
    settings = Settings.explicit(data_dir=tmp_path, admin_username="root_user")
    result = security.bootstrap_admin(db, settings)
    assert result.created and result.password_file is not None
    assert stat.S_IMODE(result.password_file.stat().st_mode) == 0o600
    password = result.password_file.read_text().strip()
    user = users.authenticate(db, "root_user", password)
    assert user is not None and user["role"] == "admin"


SECRETS = {
    "pw": "hunter2-password-value",
    "tok": "eyJhbGciOi.token-value.sig",
    "key": "wandb-api-key-value",
    "jwt": "jwt-secret-value",
    "db": "db-credential-value",
}


def test_logs_never_contain_secrets():
    stream = io.StringIO()
    factory, level = logging.getLogRecordFactory(), logging.getLogger().level
    handler = configure_logging("DEBUG", stream)
    log = logging.getLogger("serve_app.test")
    try:
        log.info("login user=%s password=%s", "ann", SECRETS["pw"])
        log.info("settings %s", Settings.explicit(data_dir="/tmp/x", jwt_secret=SECRETS["jwt"]))
        log.info("wrapped %s", SecretStr(SECRETS["key"]))
        log.info("request %s", {"headers": {"Authorization": f"Bearer {SECRETS['tok']}"}, "path": "/api/v1/models"})
        log.warning("payload", extra={"api_key": SECRETS["key"], "body": {"new_password": SECRETS["pw"], "n": 3}})
        log.info("connecting to mongodb://svc:%s@db:27017/lwmecps", SECRETS["db"])
        log.info("header Authorization: Bearer %s", SECRETS["tok"])
        try:
            raise RuntimeError(f"failed with token={SECRETS['tok']}")
        except RuntimeError:
            log.exception("boom")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.setLogRecordFactory(factory)
        logging.getLogger().setLevel(level)
    out = stream.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 8 and {"ts", "level", "logger", "msg"} <= set(lines[0])
    for value in SECRETS.values():
        assert value not in out
    assert lines[0]["msg"] == "login user=ann password=[REDACTED]"
    assert lines[4]["body"] == {"new_password": "[REDACTED]", "n": 3} and lines[4]["api_key"] == "[REDACTED]"
    assert "/api/v1/models" in lines[3]["msg"] and "mongodb://svc:[REDACTED]@db:27017" in lines[5]["msg"]
    assert "RuntimeError" in lines[7]["exc"]


def test_redaction_keeps_ordinary_records_intact():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "trained %d iterations of %s", (5, "ppo"), None)
    assert RedactFilter().filter(record) is True
    assert record.getMessage() == "trained 5 iterations of ppo"
