"""``lwmecps backup <dir>`` and ``lwmecps restore <dir>``: every collection and the model artifacts.

A backup directory holds ``collections/<name>.jsonl`` (one document per line, canonical extended JSON, so ObjectIds,
dates and 64-bit integers come back with their types), ``artifacts/`` (a copy of the local storage root) and
``manifest.json`` (database, storage root, and for every file its size and sha256, for collections also the
document count). ``restore`` checks every file against the manifest before it writes anything, and refuses a
database or storage root that already holds data unless ``--force`` (which replaces the backed-up collections and
overwrites files). Model documents whose top-level paths pointed into the old storage root are rebased onto the
new one. A backup taken while the service runs is not a point-in-time snapshot (documents are read one collection
after another).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo.database import Database

from serve_app.commands import UsageError
from serve_app.commands.common import progress
from serve_app.store.client import ensure_indexes

FORMAT = "lwmecps-backup"
VERSION = 1
MANIFEST = "manifest.json"
COLLECTIONS_DIR = "collections"
ARTIFACTS_DIR = "artifacts"
BATCH = 1000
_JSON = json_util.CANONICAL_JSON_OPTIONS.with_options(tz_aware=True)

Report = Callable[[str], None]


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backup", help="dump all collections and model artifacts into a directory")
    b.add_argument("dir", type=Path, help="the backup directory (created; must be empty if it exists)")
    b.add_argument("--db", help="database name (default: LWMECPS_MONGODB_DB)")
    b.set_defaults(func=backup_command)
    r = sub.add_parser("restore", help="restore a backup directory into an empty database and storage root")
    r.add_argument("dir", type=Path, help="a directory written by `lwmecps backup`")
    r.add_argument("--db", help="database name (default: LWMECPS_MONGODB_DB)")
    r.add_argument("--force", action="store_true", help="replace existing collections and overwrite artifact files")
    r.set_defaults(func=restore_command)


# -- files -----------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256(path)}


def _tree(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def _is_empty_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


# -- backup ----------------------------------------------------------------------------------------------------


def backup(db: Database, storage: Path | None, out: Path, report: Report = progress) -> dict[str, Any]:
    """Write a backup of ``db`` and the local artifact tree ``storage`` into ``out``; returns the manifest."""
    if not _is_empty_dir(out):
        raise UsageError(f"dir: {out} exists and is not empty; back up into a new directory")
    (out / COLLECTIONS_DIR).mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "database": db.name,
        "storage_root": str(storage) if storage is not None else None,
        "collections": {},
        "artifacts": {},
    }
    for name in sorted(db.list_collection_names()):
        report(f"dumping collection {name}")
        path = out / COLLECTIONS_DIR / f"{name}.jsonl"
        count = 0
        with open(path, "w", encoding="utf-8") as fh:
            for doc in db[name].find().sort("_id", 1):
                fh.write(json_util.dumps(doc, json_options=_JSON) + "\n")
                count += 1
        manifest["collections"][name] = {"file": f"{COLLECTIONS_DIR}/{name}.jsonl", "count": count, **_file_entry(path)}
    if storage is not None and storage.is_dir():
        report(f"copying artifacts from {storage}")
        shutil.copytree(storage, out / ARTIFACTS_DIR, symlinks=False)
        for path in _tree(out / ARTIFACTS_DIR):
            manifest["artifacts"][path.relative_to(out / ARTIFACTS_DIR).as_posix()] = _file_entry(path)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(c["count"] for c in manifest["collections"].values())
    report(
        f"backup written to {out}: {len(manifest['collections'])} collections, {total} documents, "
        f"{len(manifest['artifacts'])} artifact files"
    )
    return manifest


# -- restore ---------------------------------------------------------------------------------------------------


def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest of ``src``, after checking that every file it lists is present and unaltered."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise UsageError(f"dir: {src} has no {MANIFEST}; not a backup written by `lwmecps backup`") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"{src / MANIFEST}: unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UsageError(f"{src / MANIFEST}: not a {FORMAT} version {VERSION} manifest")
    files = {entry["file"]: entry for entry in manifest["collections"].values()}
    files |= {f"{ARTIFACTS_DIR}/{rel}": entry for rel, entry in manifest["artifacts"].items()}
    for rel, entry in files.items():
        path = src / rel
        if ".." in Path(rel).parts or not path.is_file():
            raise UsageError(f"{rel}: listed in the manifest but missing from {src}")
        if sha256(path) != entry["sha256"]:
            raise UsageError(f"{rel}: sha256 differs from the manifest (file altered or truncated)")
    return manifest


def _rebase(doc: dict[str, Any], old: str | None, new: Path | None) -> dict[str, Any]:
    """Top-level string fields under the old storage root, moved under the new one."""
    if not old or new is None or str(new) == old:
        return doc
    prefix = old.rstrip("/") + "/"
    return {
        k: f"{new}/{v[len(prefix) :]}" if isinstance(v, str) and v.startswith(prefix) else v for k, v in doc.items()
    }


def restore(
    db: Database, storage: Path | None, src: Path, *, force: bool = False, report: Report = progress
) -> dict[str, Any]:
    """Restore the backup in ``src`` into ``db`` and the local artifact tree ``storage``; returns the manifest."""
    report(f"verifying {src}")
    manifest = read_manifest(src)
    names = sorted(manifest["collections"])
    if not force:
        busy = [n for n in db.list_collection_names() if db[n].estimated_document_count() > 0]
        if busy:
            raise UsageError(f"--db: database {db.name!r} is not empty ({', '.join(sorted(busy))}); use --force")
        if manifest["artifacts"] and storage is not None and not _is_empty_dir(storage):
            raise UsageError(f"storage root {storage} is not empty; use --force to overwrite files")
    if manifest["artifacts"] and storage is None:
        raise UsageError("storage root is a cloud URI; restore copies artifacts to a local storage root only")
    for name in names:
        entry = manifest["collections"][name]
        report(f"restoring collection {name} ({entry['count']} documents)")
        if force:
            db[name].drop()
        batch: list[dict[str, Any]] = []
        count = 0
        with open(src / entry["file"], encoding="utf-8") as fh:
            for line in fh:
                doc = json_util.loads(line, json_options=_JSON)
                batch.append(_rebase(doc, manifest["storage_root"], storage) if name == "models" else doc)
                if len(batch) >= BATCH:
                    count += len(db[name].insert_many(batch).inserted_ids)
                    batch = []
        if batch:
            count += len(db[name].insert_many(batch).inserted_ids)
        if count != entry["count"]:
            raise UsageError(f"{entry['file']}: restored {count} documents, the manifest says {entry['count']}")
    if manifest["artifacts"] and storage is not None:
        report(f"copying {len(manifest['artifacts'])} artifact files to {storage}")
        shutil.copytree(src / ARTIFACTS_DIR, storage, dirs_exist_ok=True)
    ensure_indexes(db)
    report(f"restored {len(names)} collections into {db.name!r}")
    return manifest


# -- command handlers ------------------------------------------------------------------------------------------


def _target(args: argparse.Namespace) -> tuple[Database, Path | None]:
    from pymongo.errors import PyMongoError

    from serve_app.settings import get_settings
    from serve_app.store.client import MongoStartError, get_client
    from serve_app.store.common import check_name

    settings = get_settings()
    name = check_name(args.db, "--db") if args.db else settings.mongodb_db
    try:
        client = get_client(settings)
        client.admin.command("ping")
    except (PyMongoError, MongoStartError) as err:
        raise UsageError(f"database: cannot connect ({str(err).splitlines()[0]})") from None
    return client[name], settings.local_storage


def backup_command(args: argparse.Namespace) -> int:
    db, storage = _target(args)
    if storage is None:
        raise UsageError("storage root is a cloud URI; back up its artifacts with that store's own tools")
    backup(db, storage, args.dir)
    return 0


def restore_command(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise UsageError(f"dir: {args.dir} is not a directory")
    db, storage = _target(args)
    restore(db, storage, args.dir, force=args.force)
    return 0
