"""Service-test fixtures: ONE real nx-27017 MongoDB wire server per session; each test gets its own database."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from serve_app.settings import Settings
from serve_app.store.client import EmbeddedMongo, connect, ensure_indexes

ADMIN_PASSWORD = "admin-password-for-tests"


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMongo]:
    """The session's nx-27017 server (on-disk data in a temporary directory, a free port on 127.0.0.1)."""
    server = EmbeddedMongo(tmp_path_factory.mktemp("mongo"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_client(mongo_server: EmbeddedMongo) -> Iterator[MongoClient]:
    client = connect(mongo_server.uri)
    yield client
    client.close()


def db_name_for(nodeid: str) -> str:
    """A unique ``[a-z0-9_]`` database name for a test id."""
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9_]+", "_", nodeid.rsplit("::", 1)[-1].lower()).strip("_")[:40]
    return f"t_{stem}_{digest}"


@pytest.fixture
def db(mongo_client: MongoClient, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database with the service's indexes, dropped afterwards."""
    name = db_name_for(request.node.nodeid)
    mongo_client.drop_database(name)
    database = mongo_client[name]
    ensure_indexes(database)
    yield database
    mongo_client.drop_database(name)


@pytest.fixture
def settings(db: Database, mongo_server: EmbeddedMongo, tmp_path: Path) -> Settings:
    """Settings for this test's database and a temporary data dir / storage root (environment ignored)."""
    return Settings.explicit(
        mongodb_uri=mongo_server.uri,
        mongodb_db=db.name,
        data_dir=tmp_path / "data",
        storage_root=str(tmp_path / "storage"),
        admin_password=ADMIN_PASSWORD,
    )
