"""Users: ``GET /users/me`` for anyone signed in; creating, listing, updating and deleting users is for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from serve_app.api.deps import Admin, CurrentUser, DbDep, Limit, Skip
from serve_app.api.errors import ConflictState
from serve_app.schemas import UserCreate, UserPage, UserPublic, UserUpdate
from serve_app.store import users

router = APIRouter(prefix="/users", tags=["users"])
Username = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser, db: DbDep) -> dict:
    return users.get_user(db, user.username)


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, admin: Admin, db: DbDep) -> dict:
    return users.create_user(db, body.username, body.password.get_secret_value(), body.role)


@router.get("", response_model=UserPage)
def list_users(admin: Admin, db: DbDep, skip: Skip = 0, limit: Limit = 50) -> dict:
    page = users.list_users(db, skip=skip, limit=limit)
    return {"items": page.items, "total": page.total, "skip": skip, "limit": limit}


@router.get("/{username}", response_model=UserPublic)
def get_user(username: Username, admin: Admin, db: DbDep) -> dict:
    return users.get_user(db, username)


@router.patch("/{username}", response_model=UserPublic)
def update_user(username: Username, body: UserUpdate, admin: Admin, db: DbDep, request: Request) -> dict:
    if body.role is not None and username == admin.username and body.role != "admin":
        raise ConflictState("role: you cannot demote yourself (ask another admin)")
    user = users.get_user(db, username)
    if body.password is not None:
        user = users.set_password(db, username, body.password.get_secret_value())
    if body.role is not None:
        user = users.update_role(db, username, body.role)
    request.app.state.user_cache.forget(username)
    return user


@router.delete("/{username}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(username: Username, admin: Admin, db: DbDep, request: Request) -> Response:
    if username == admin.username:
        raise ConflictState("username: you cannot delete yourself (ask another admin)")
    users.delete_user(db, username)
    request.app.state.user_cache.forget(username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
