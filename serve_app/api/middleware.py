"""Pure ASGI middleware (no per-request task switch, unlike ``BaseHTTPMiddleware``): request metrics and tracing,
the body-size limit (413) and the content-type check (415)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serve_app.observability import Observability

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: path -> accepted media types of a request body (every other path with a body takes JSON)
FORM_PATHS = {"/api/v1/auth/token": ("application/x-www-form-urlencoded", "multipart/form-data")}
JSON_TYPES = ("application/json",)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = json.dumps({"detail": message}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 when the declared or the streamed body exceeds ``max_bytes``; 415 when a body's media type is not the
    one the path takes."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        declared: int | None = None
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_error(send, 400, "content-length: not an integer")
                return
            if declared > self.max_bytes:
                await send_error(send, 413, f"request body too large: {declared} bytes (limit {self.max_bytes})")
                return
        media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        has_body = bool(media) or (declared or 0) > 0 or _header(scope, b"transfer-encoding") is not None
        if has_body:
            allowed = FORM_PATHS.get(scope["path"].rstrip("/"), JSON_TYPES)
            if media not in allowed:
                shown = f"{media!r}" if media else "none"
                await send_error(send, 415, f"content-type {shown} not supported: send {' or '.join(allowed)}")
                return
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count a streamed body; past the limit answer 413 at once and drop whatever the app answers after
        (FastAPI turns the error raised into its body read into a 400 of its own)."""
        seen = 0
        started = rejected = False

        async def counted_receive() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if not started and not rejected:
                        rejected = True
                        await send_error(send, 413, f"request body too large (limit {self.max_bytes} bytes)")
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counted_receive, tracked_send)


class RequestMetrics:
    """Request latency histogram and count per route template, and a span per request when tracing is on."""

    def __init__(self, app: ASGIApp, obs: Observability, labels: dict[int, str]):
        self.app = app
        self.obs = obs
        self.labels = labels  # id(route) -> its full path template (routes of included routers know only theirs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self.obs.span(f"{scope['method']} {scope['path']}") as span:
            try:
                await self.app(scope, receive, tracked_send)
            finally:
                matched = scope.get("route")
                route = self.labels.get(id(matched)) or getattr(matched, "path", None) or "unmatched"
                self.obs.observe_request(scope["method"], route, status, time.perf_counter() - t0)
                if span is not None:
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
