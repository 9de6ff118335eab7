"""Users: ``{username (unique), password_hash, role, created_at, updated_at}``; the hash is never returned."""

from __future__ import annotations

import re
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from serve_app.security import DUMMY_HASH, MIN_PASSWORD_LENGTH, check_role, hash_password, verify_password
from serve_app.store.common import ConflictError, NotFoundError, Page, now, page, public, set_fields

COLLECTION = "users"
HIDDEN = ("password_hash",)
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

__all__ = ["ConflictError", "authenticate", "create_user", "delete_user", "get_user", "list_users", "update_role"]


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise ValueError(f"username must be 1-64 characters of letters, digits, _ . @ -, got {username!r}")
    return username


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def create_user(db: Database, username: str, password: str, role: str = "viewer") -> dict[str, Any]:
    """A new user; :class:`ConflictError` if the username is taken."""
    check_username(username)
    check_role(role)
    t = now()
    doc: dict[str, Any] = {
        "username": username,
        "password_hash": hash_password(_check_password(password)),
        "role": role,
        "created_at": t,
        "updated_at": t,
    }
    try:
        doc["_id"] = db[COLLECTION].insert_one(doc).inserted_id
    except DuplicateKeyError:
        raise ConflictError(f"username {username!r} is taken") from None
    return public(doc, HIDDEN)


def find_user(db: Database, username: str) -> dict[str, Any] | None:
    doc = db[COLLECTION].find_one({"username": check_username(username)})
    return None if doc is None else public(doc, HIDDEN)


def get_user(db: Database, username: str) -> dict[str, Any]:
    user = find_user(db, username)
    if user is None:
        raise NotFoundError(f"user {username!r} not found")
    return user


def list_users(db: Database, *, skip: int = 0, limit: int = 50) -> Page:
    return page(db[COLLECTION], {}, skip, limit, [("username", 1)], HIDDEN)


def _set(db: Database, username: str, fields: dict[str, Any]) -> dict[str, Any]:
    doc = db[COLLECTION].find_one_and_update(
        {"username": check_username(username)},
        set_fields(fields),
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        raise NotFoundError(f"user {username!r} not found")
    return public(doc, HIDDEN)


def update_role(db: Database, username: str, role: str) -> dict[str, Any]:
    return _set(db, username, {"role": check_role(role)})


def set_password(db: Database, username: str, password: str) -> dict[str, Any]:
    return _set(db, username, {"password_hash": hash_password(_check_password(password))})


def delete_user(db: Database, username: str) -> dict[str, Any]:
    doc = db[COLLECTION].find_one_and_delete({"username": check_username(username)})
    if doc is None:
        raise NotFoundError(f"user {username!r} not found")
    return public(doc, HIDDEN)


def authenticate(db: Database, username: str, password: str) -> dict[str, Any] | None:
    """The user if ``password`` is theirs, else None (same work whether or not the user exists)."""
    doc = db[COLLECTION].find_one({"username": username}) if USERNAME_RE.match(username or "") else None
    ok = verify_password(password, doc["password_hash"] if doc else DUMMY_HASH)
    return public(doc, HIDDEN) if doc is not None and ok else None
