"""What every repository shares: our errors, id conversion, the public form of a document, pages, timestamps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection

NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
MAX_LIMIT = 1000


class StoreError(Exception):
    """Base of the storage errors; the API maps each subclass to a 4xx status."""


class InvalidIdError(StoreError, ValueError):
    """An id that is not a 24-hex-digit ObjectId (malformed, as opposed to unknown)."""


class NotFoundError(StoreError, LookupError):
    """A well-formed id (or name) with no document."""


class ConflictError(StoreError):
    """A unique key is taken (e.g. a username)."""


class InvalidTransitionError(StoreError):
    """A status change the lifecycle does not allow (e.g. completed -> running)."""


@dataclass(frozen=True)
class Page:
    """One page of a listing and the total number of matching documents."""

    items: list[dict[str, Any]]
    total: int
    skip: int = 0
    limit: int = 50
    extra: dict[str, Any] = field(default_factory=dict)


def now() -> datetime:
    """The current UTC time, truncated to milliseconds (what BSON dates keep), so round trips compare equal."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


#: nx-27017's SQL fast path stores a top-level ``$set`` of a bool as 1 and of a datetime as a string; an update that
#: also pulls from an absent field takes its document-level path instead, which keeps BSON types. On MongoDB
#: ``$pull`` on an absent field is a no-op.
_KEEP_TYPES = {"$pull": {"_keep_types": None}}


def set_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The update document that sets ``fields`` and ``updated_at`` (always use this rather than a bare ``$set``)."""
    return {"$set": {**fields, "updated_at": now()}, **_KEEP_TYPES}


def check_name(name: str, what: str = "collection name") -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"{what} must match [a-z0-9_]{{1,63}}, got {name!r}")
    return name


def oid(value: str | ObjectId, what: str = "id") -> ObjectId:
    """``value`` as an ObjectId; :class:`InvalidIdError` naming ``what`` when it is malformed."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and ObjectId.is_valid(value) and len(value) == 24:
        return ObjectId(value)
    raise InvalidIdError(f"{what}: not a valid id (24 hex digits): {value!r}")


def public(doc: Mapping[str, Any], hidden: Iterable[str] = ()) -> dict[str, Any]:
    """A stored document as returned to callers: ``_id`` -> ``id: str``, hidden fields dropped, UTC-aware dates."""
    out: dict[str, Any] = {"id": str(doc["_id"])}
    skip = {"_id", *hidden}
    for key, value in doc.items():
        if key not in skip:
            out[key] = _aware(value)
    return out


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def page(
    coll: Collection,
    query: Mapping[str, Any],
    skip: int,
    limit: int,
    sort: list[tuple[str, int]],
    hidden: Iterable[str] = (),
) -> Page:
    """One page of ``coll`` matching ``query`` plus the total count."""
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    hidden = tuple(hidden)
    items = [public(d, hidden) for d in coll.find(dict(query)).sort(sort).skip(skip).limit(limit)]
    return Page(items=items, total=coll.count_documents(dict(query)), skip=skip, limit=limit)


def get_one(coll: Collection, doc_id: str | ObjectId, what: str, hidden: Iterable[str] = ()) -> dict[str, Any]:
    key = oid(doc_id, f"{what} id")
    doc = coll.find_one({"_id": key})
    if doc is None:
        raise NotFoundError(f"{what} {key} not found")
    return public(doc, hidden)


def delete_one(coll: Collection, doc_id: str | ObjectId, what: str) -> dict[str, Any]:
    """Delete a document and return it as it was; NotFoundError if there was none."""
    key = oid(doc_id, f"{what} id")
    doc = coll.find_one_and_delete({"_id": key})
    if doc is None:
        raise NotFoundError(f"{what} {key} not found")
    return public(doc)


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
    allowed = tuple(choices)
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return value
