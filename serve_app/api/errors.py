"""Every error the API answers with is ``{"detail": "<one clean line naming the field>"}`` and a 4xx/5xx status.

Our own errors map to statuses here (store: malformed id 422, unknown 404, conflicts 409; runtime: 502/503;
database down: 503); request validation errors become one line ``<where>.<field>: <problem>`` (plus the list of all
problems, without the offending input, so a secret sent in a bad body is never echoed). Anything unexpected is a 500
with a generic message: the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from serve_app.runtime_protocol import RuntimeFailure, RuntimeUnavailable
from serve_app.store import ConflictError, InvalidIdError, InvalidTransitionError, NotFoundError, StoreError

log = logging.getLogger("serve_app.api")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
MAX_MESSAGE = 500
#: tags of our discriminated unions that pydantic puts into error locations (dropped: they are not fields)
_UNION_TAGS = frozenset({"observation", "snapshot"})
_NAMED = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class ApiError(Exception):
    """A request the API refuses, with its status and one-line message (``headers`` e.g. WWW-Authenticate)."""

    status = 400

    def __init__(self, message: str, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.headers = headers


class InputError(ApiError):
    """Bad input found beyond the schema (unknown preset, bad hyperparameter, invalid observation): 422."""

    status = 422


class ConflictState(ApiError):
    """The resource is in a state that forbids the request (delete a running task, deploy a failed model): 409."""

    status = 409


def clean(message: object) -> str:
    """One line, without ANSI codes or control characters, at most :data:`MAX_MESSAGE` characters."""
    text = _ANSI.sub("", str(message))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    line = next((x for x in lines if x), "")
    line = "".join(ch for ch in line if ch.isprintable())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def error_response(status: int, message: object, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": clean(message) or "error", **extra}, status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part in _UNION_TAGS or str(part).startswith(("function-", "tagged-"))):
            out += f".{part}" if out else str(part)
    return out


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The first problem as one line and every problem as ``{loc, msg, type}`` (no input values)."""
    rows: list[dict[str, Any]] = [
        {
            "loc": [p for p in e.get("loc", ()) if isinstance(p, str | int)],
            "msg": clean(str(e.get("msg", "")).removeprefix("Value error, ")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    if not rows:
        return "invalid request", rows
    first = errors[0]
    where = _loc(tuple(first.get("loc", ())))
    msg = rows[0]["msg"]
    if first.get("type") == "missing":
        msg = "field required"
    named = _NAMED.match(msg)
    if named and first.get("type") == "value_error":  # a model-level check naming its field: "body.<field>: ..."
        where, msg = f"{where}.{named.group(1)}" if where else named.group(1), msg[named.end() :]
    return (f"{where}: {msg}" if where else msg), rows


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, rows = validation_message(list(exc.errors()))
        return error_response(422, message, errors=rows)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc, exc.headers)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        status = 400
        if isinstance(exc, InvalidIdError):
            status = 422
        elif isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, ConflictError | InvalidTransitionError):
            status = 409
        return error_response(status, exc)

    @app.exception_handler(RuntimeUnavailable)
    async def _unavailable(request: Request, exc: RuntimeUnavailable) -> JSONResponse:
        return error_response(503, f"runtime unavailable: {clean(exc)}", {"Retry-After": "5"})

    @app.exception_handler(RuntimeFailure)
    async def _failure(request: Request, exc: RuntimeFailure) -> JSONResponse:
        return error_response(502, f"runtime error: {clean(exc)}")

    @app.exception_handler(PyMongoError)
    async def _database(request: Request, exc: PyMongoError) -> JSONResponse:
        log.error("database error on %s %s: %s", request.method, request.url.path, clean(exc))
        if isinstance(exc, ConnectionFailure):
            return error_response(503, "database unavailable", {"Retry-After": "5"})
        return error_response(500, "database error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")
