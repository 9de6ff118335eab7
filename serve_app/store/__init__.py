"""MongoDB storage: the client (embedded nx-27017 or a URI), indexes, and one repository module per collection.

Repositories are plain functions taking a :class:`pymongo.database.Database` first; documents go in and out as
plain dicts with ``id: str`` (``_id: ObjectId`` inside the database) and UTC ``datetime`` timestamps.
"""

from serve_app.store.common import (
    ConflictError,
    InvalidIdError,
    InvalidTransitionError,
    NotFoundError,
    Page,
    StoreError,
)

__all__ = ["ConflictError", "InvalidIdError", "InvalidTransitionError", "NotFoundError", "Page", "StoreError"]
