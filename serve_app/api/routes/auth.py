"""``POST /api/v1/auth/token``: the OAuth2 password flow (form ``username`` + ``password``) -> a bearer JWT."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.concurrency import run_in_threadpool

from serve_app.api.deps import DbDep, SettingsDep, unauthorized
from serve_app.schemas import TokenPublic
from serve_app.security import issue_token
from serve_app.store import users

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenPublic, responses={401: {"description": "wrong username or password"}})
async def token(
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
    settings: SettingsDep,
    db: DbDep,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenPublic:
    """Exchange a username and password for a bearer token (``Authorization: Bearer <access_token>``)."""
    user = await run_in_threadpool(users.authenticate, db, username, password)  # scrypt: keep it off the loop
    if user is None:
        raise unauthorized("wrong username or password")
    return TokenPublic(
        access_token=issue_token(user["username"], user["role"], settings), expires_in=settings.jwt_ttl_s
    )
