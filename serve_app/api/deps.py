"""``Annotated`` dependencies of the routers: settings, database, runtime, observability, the current user, roles.

The current user comes from the bearer JWT (``sub``), but the role is the one stored now (looked up by username,
cached a few seconds), so a demoted or deleted user loses rights without waiting for their token to expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from pymongo.database import Database

from serve_app.api.errors import ApiError
from serve_app.observability import Observability
from serve_app.runtime_protocol import Runtime
from serve_app.security import TokenError, has_role, verify_token
from serve_app.settings import Settings
from serve_app.store import users

TOKEN_URL = "/api/v1/auth/token"
USER_CACHE_S = 5.0


@dataclass(frozen=True)
class User:
    username: str
    role: str


class UserCache:
    """username -> stored user for a few seconds (saves a database round trip per request on hot paths)."""

    def __init__(self, ttl_s: float = USER_CACHE_S):
        self.ttl_s = ttl_s
        self._rows: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def get(self, db: Database, username: str) -> User | None:
        now = time.monotonic()
        with self._lock:
            hit = self._rows.get(username)
        if hit is not None and hit[0] > now:
            return hit[1]
        doc = users.find_user(db, username)
        user = None if doc is None else User(doc["username"], doc["role"])
        with self._lock:
            if len(self._rows) > 10_000:
                self._rows.clear()
            self._rows[username] = (now + self.ttl_s, user)
        return user

    def forget(self, username: str) -> None:
        with self._lock:
            self._rows.pop(username, None)


def _state(request: Request) -> Any:
    return request.app.state


def settings_dep(request: Request) -> Settings:
    return _state(request).settings


def db_dep(request: Request) -> Database:
    getter: Callable[[], Database] = _state(request).db
    return getter()


def runtime_dep(request: Request) -> Runtime:
    return _state(request).runtime


def obs_dep(request: Request) -> Observability:
    return _state(request).obs


SettingsDep = Annotated[Settings, Depends(settings_dep)]
DbDep = Annotated[Database, Depends(db_dep)]
RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
ObsDep = Annotated[Observability, Depends(obs_dep)]

_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def unauthorized(message: str, error: str | None = None) -> ApiError:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return ApiError(message, 401, {"WWW-Authenticate": challenge})


def current_user(
    request: Request, token: Annotated[str | None, Depends(_bearer)], settings: SettingsDep, db: DbDep
) -> User:
    if not token:
        raise unauthorized("not authenticated: send 'Authorization: Bearer <token>' (POST /api/v1/auth/token)")
    try:
        claims = verify_token(token, settings)
    except TokenError as err:
        raise unauthorized(str(err), "invalid_token") from None
    try:
        user = _state(request).user_cache.get(db, str(claims["sub"]))
    except ValueError:  # a subject that is not a valid username
        user = None
    if user is None:
        raise unauthorized("invalid token: the user no longer exists", "invalid_token")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(role: str) -> Callable[[User], User]:
    """A dependency that lets through users with at least ``role`` (403 otherwise)."""

    def check(user: CurrentUser) -> User:
        if not has_role(user.role, role):
            raise ApiError(f"forbidden: this needs the {role} role (you are {user.role})", 403)
        return user

    check.__name__ = f"require_{role}"
    return check


Viewer = Annotated[User, Depends(require("viewer"))]
Operator = Annotated[User, Depends(require("operator"))]
Admin = Annotated[User, Depends(require("admin"))]


Skip = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
