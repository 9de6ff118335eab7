"""Structured logging: one JSON object per line, with secrets redacted before anything is formatted.

:func:`configure_logging` installs a handler with :class:`JsonFormatter` and :class:`RedactFilter` on the root
logger. The filter blanks ``SecretStr`` values, values under keys named like ``*password*``, ``*secret*``,
``*token*``, ``*api_key*`` or ``authorization`` (in dict arguments and ``extra=`` fields), and the same patterns
inside message text (``password=...``, ``Authorization: Bearer ...``, ``scheme://user:password@host``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from pydantic import SecretBytes, SecretStr

REDACTED = "[REDACTED]"
SENSITIVE_KEY = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|authorization|credential|fernet)")
_TEXT_PATTERNS = [
    # Authorization: Bearer xyz / "authorization": "Basic xyz"
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic)\s+)?[^\s\"',;}]+"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{REDACTED}"),
    # password=..., "api_key": "...", secret: ...
    (
        re.compile(
            r"(?i)([\w-]*(?:password|passwd|secret|token|api[_-]?key|credential)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
            r"[^\s\"',;&}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # mongodb://user:pass@host, redis://:pass@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(@)"), rf"\1{REDACTED}\2"),
]
#: attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def redact_text(text: str) -> str:
    for pattern, repl in _TEXT_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with secrets replaced; ``key`` is the name it was stored under, if any."""
    if key is not None and SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    return value


def redact_message(record: logging.LogRecord) -> None:
    """Format the record's message now, from redacted arguments, and redact the result (``args`` become empty)."""
    if isinstance(record.args, Mapping):
        record.args = redact(record.args)
    elif record.args:
        record.args = tuple(redact(a) for a in record.args)
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep both parts, still redacted
        message = f"{record.msg} {record.args}"
    record.msg, record.args = redact_text(message), ()


class RedactFilter(logging.Filter):
    """Rewrites a record in place so no later formatter or handler sees a secret. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_message(record)
        for key in set(vars(record)) - _STANDARD:
            setattr(record, key, redact(getattr(record, key), key))
        return True


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    redact_message(record)
    return record


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields, "exc"}`` as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        for key in sorted(set(vars(record)) - _STANDARD):
            out[key] = redact(getattr(record, key), key)
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(out, default=lambda v: redact_text(str(v)))


def configure_logging(level: int | str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Route the root logger through one JSON handler with redaction (replacing handlers we installed before)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_lwmecps", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    handler._lwmecps = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # handlers installed by others (uvicorn, Ray, pytest) get redacted messages too; ``extra=`` fields are
    # set after the factory runs, so only our handler's filter redacts those
    logging.setLogRecordFactory(_redacting_factory)
    return handler
