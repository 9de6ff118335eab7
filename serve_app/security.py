"""Passwords (scrypt), JWTs (HS256 with ``sub``, ``role``, ``exp``), roles, Fernet encryption, admin bootstrap.

Roles are ordered ``viewer < operator < admin``: viewers read, operators also train and deploy, admins also
delete and manage users. Each function taking ``settings`` uses :func:`serve_app.settings.get_settings` when
none is given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.fernet import Fernet, InvalidToken
from pymongo.database import Database

from serve_app.settings import Settings, get_settings, write_private

ROLES = ("viewer", "operator", "admin")
JWT_ALGORITHM = "HS256"
ADMIN_PASSWORD_FILE = "admin_password"
MIN_PASSWORD_LENGTH = 8
# scrypt cost: n=2**14, r=8, p=1 (16 MiB, ~50 ms here) is the interactive-login setting of the scrypt paper
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class TokenError(Exception):
    """A bearer token that is malformed, tampered with, expired or lacks a claim (the API answers 401)."""


class DecryptError(Exception):
    """Ciphertext that this service's Fernet key did not produce, or that was altered."""


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def has_role(user_role: str, needed: str) -> bool:
    """Whether ``user_role`` includes the rights of ``needed`` (unknown user roles have none)."""
    check_role(needed)
    return user_role in ROLES and ROLES.index(user_role) >= ROLES.index(needed)


# -- passwords -------------------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64 parts) of ``password`` with a fresh 16-byte salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time compare; False if malformed)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


#: compared against when a username is unknown, so a login takes as long either way
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


# -- tokens ----------------------------------------------------------------------------------------------------


def issue_token(subject: str, role: str, settings: Settings | None = None, ttl_s: int | None = None) -> str:
    """A signed JWT for ``subject`` with ``role``, expiring after ``ttl_s`` (default ``settings.jwt_ttl_s``)."""
    settings = settings or get_settings()
    check_role(role)
    issued = datetime.now(UTC)
    claims = {
        "sub": subject,
        "role": role,
        "iat": issued,
        "exp": issued + timedelta(seconds=settings.jwt_ttl_s if ttl_s is None else ttl_s),
    }
    return jwt.encode(claims, settings.jwt_key(), algorithm=JWT_ALGORITHM)


def verify_token(token: str, settings: Settings | None = None) -> dict[str, Any]:
    """The claims of a valid token (``sub``, ``role``, ``exp``, ``iat``); :class:`TokenError` otherwise."""
    settings = settings or get_settings()
    try:
        claims: dict[str, Any] = jwt.decode(
            token, settings.jwt_key(), algorithms=[JWT_ALGORITHM], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.PyJWTError as err:
        raise TokenError(f"invalid token: {err}") from None
    if claims["role"] not in ROLES:
        raise TokenError(f"invalid token: unknown role {claims['role']!r}")
    return claims


# -- encryption at rest ----------------------------------------------------------------------------------------


def _fernet(settings: Settings | None) -> Fernet:
    return Fernet((settings or get_settings()).fernet_secret().encode())


def encrypt(plaintext: str, settings: Settings | None = None) -> str:
    """Fernet ciphertext (URL-safe text) of ``plaintext``, for credentials stored at rest."""
    return _fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, settings: Settings | None = None) -> str:
    try:
        return _fernet(settings).decrypt(ciphertext.encode()).decode()
    except (InvalidToken, ValueError):
        raise DecryptError("cannot decrypt: wrong key or altered ciphertext") from None


# -- admin bootstrap -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    """What :func:`bootstrap_admin` did: ``created`` or not, and where a generated password was written."""

    username: str
    created: bool
    password_file: Path | None = None


def bootstrap_admin(db: Database, settings: Settings | None = None) -> Bootstrap:
    """Create the configured admin if no user of that name exists (idempotent; an existing user is left as is).

    Without ``admin_password`` a random one is generated and written to ``<data_dir>/admin_password`` (0600).
    """
    from serve_app.store import users  # users imports this module

    settings = settings or get_settings()
    name = settings.admin_username
    if users.find_user(db, name) is not None:
        return Bootstrap(name, created=False)
    password_file = None
    if settings.admin_password is not None:
        password = settings.admin_password.get_secret_value()
    else:
        password = secrets.token_urlsafe(18)
        password_file = settings.data_dir / ADMIN_PASSWORD_FILE
        write_private(password_file, password + "\n")
    try:
        users.create_user(db, name, password, "admin")
    except users.ConflictError:  # created concurrently by another replica
        return Bootstrap(name, created=False)
    return Bootstrap(name, created=True, password_file=password_file)
