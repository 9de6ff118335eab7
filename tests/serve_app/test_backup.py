"""``lwmecps backup`` / ``restore``: a backup restored into an empty database gives the same documents and files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId

from serve_app import security
from serve_app.cli import main
from serve_app.commands import UsageError
from serve_app.commands.backup import MANIFEST, backup, restore
from serve_app.settings import get_settings
from serve_app.store import ConflictError, deployments, metrics, models, tasks, users
from serve_app.store.client import close_client

LWMECPS = Path(sys.executable).parent / "lwmecps"


def quiet(_: str) -> None:
    pass


@pytest.fixture
def restored_db(db, mongo_client):
    """A second, empty database beside ``db``."""
    name = f"{db.name}_r"
    mongo_client.drop_database(name)
    yield mongo_client[name]
    mongo_client.drop_database(name)


def populate(db, settings) -> Path:
    """A small service history plus two models' artifact trees under the storage root; returns the root."""
    storage = settings.local_storage
    users.create_user(db, "ann", "ann's password", "operator")
    done = tasks.create_task(db, {"name": "done", "preset": "ppo_quick", "hparams": {"lr": 3e-4, "big": 2**40}})
    tasks.set_status(db, done["id"], "running", ray_job_id="raysubmit_1")
    for i in range(3):
        tasks.append_progress(db, done["id"], iteration=i + 1, progress=(i + 1) / 3, metrics_values={"reward": i * 1.5})
    secret = security.encrypt("wandb-key", settings)
    tasks.create_task(db, {"name": "queued", "owner": "ann"}, secrets={"wandb_api_key": secret})
    for name, payload in (("ppo_a", os.urandom(3000)), ("dqn_b", os.urandom(700))):
        model_id = str(ObjectId())
        root = storage / "models" / model_id
        (root / "export").mkdir(parents=True)
        (root / "export" / "policy.pt").write_bytes(payload)
        (root / "checkpoint").mkdir()
        (root / "checkpoint" / "meta.json").write_text(json.dumps({"name": name}))
        model = models.register_model(
            db, name=name, type=name.split("_")[0], artifact_uri=str(root), task_id=done["id"], model_id=model_id
        )
        dep = deployments.create_deployment(db, model_id=model["id"], name=f"dep_{name}")
        metrics.record(db, "predict", {"p50_ms": 1.2}, deployment_id=dep["id"])
    tasks.set_status(db, done["id"], "completed")
    return storage


def dump(db) -> dict[str, list[dict]]:
    return {name: list(db[name].find().sort("_id", 1)) for name in sorted(db.list_collection_names())}


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_backup_then_restore_gives_identical_collections_and_artifacts(db, restored_db, settings, tmp_path):
    storage = populate(db, settings)
    manifest = backup(db, storage, tmp_path / "bk", report=quiet)
    assert {n: c["count"] for n, c in manifest["collections"].items()} == {n: len(d) for n, d in dump(db).items()}
    assert manifest["collections"]["metrics"]["count"] == 5 and len(manifest["artifacts"]) == 4

    new_storage = tmp_path / "restored_storage"
    restore(restored_db, new_storage, tmp_path / "bk", report=quiet)
    original, copy = dump(db), dump(restored_db)
    assert set(copy) == set(original) == {"decisions", "deployments", "loops", "metrics", "models", "tasks", "users"}
    for model in original["models"]:  # artifact paths follow the files to the new storage root
        model["artifact_uri"] = model["artifact_uri"].replace(str(storage), str(new_storage))
    assert copy == original  # every document, with its ObjectIds, dates, 64-bit ints and nested values
    assert isinstance(copy["tasks"][0]["created_at"].year, int) and copy["tasks"][0]["hparams"]["big"] == 2**40
    assert files(new_storage) == files(storage)
    for model in copy["models"]:
        assert (Path(model["artifact_uri"]) / "export" / "policy.pt").is_file()

    # the restored database works like the original: indexes, logins, encrypted secrets
    with pytest.raises(ConflictError):
        users.create_user(restored_db, "ann", "another password")
    assert users.authenticate(restored_db, "ann", "ann's password") is not None
    queued = tasks.list_tasks(restored_db, status="pending").items[0]
    assert security.decrypt(tasks.get_secret(restored_db, queued["id"], "wandb_api_key") or "", settings) == "wandb-key"


def test_restore_refuses_data_unless_forced(db, restored_db, settings, tmp_path):
    storage = populate(db, settings)
    backup(db, storage, tmp_path / "bk", report=quiet)
    with pytest.raises(UsageError, match="is not empty"):
        restore(db, tmp_path / "fresh", tmp_path / "bk", report=quiet)
    with pytest.raises(UsageError, match=r"storage root .* is not empty"):
        restore(restored_db, storage, tmp_path / "bk", report=quiet)
    tasks.create_task(db, {"name": "after the backup"})
    restore(db, storage, tmp_path / "bk", force=True, report=quiet)
    assert [t["name"] for t in tasks.list_tasks(db).items] == ["queued", "done"]  # replaced, not merged
    with pytest.raises(UsageError, match="not empty"):
        backup(db, storage, tmp_path / "bk", report=quiet)


def test_restore_verifies_the_manifest_before_writing(db, restored_db, settings, tmp_path):
    storage = populate(db, settings)
    backup(db, storage, tmp_path / "bk", report=quiet)
    (tmp_path / "bk" / "collections" / "tasks.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match=r"collections/tasks.jsonl: sha256 differs"):
        restore(restored_db, tmp_path / "s2", tmp_path / "bk", report=quiet)
    assert restored_db.list_collection_names() == [] and not (tmp_path / "s2").exists()
    (tmp_path / "bk" / MANIFEST).unlink()
    with pytest.raises(UsageError, match=r"no manifest\.json"):
        restore(restored_db, tmp_path / "s2", tmp_path / "bk", report=quiet)


def cli_env(settings, db_name: str) -> dict[str, str]:
    return {
        "LWMECPS_MONGODB_URI": settings.mongodb_uri,
        "LWMECPS_MONGODB_DB": db_name,
        "LWMECPS_DATA_DIR": str(settings.data_dir),
        "LWMECPS_STORAGE_ROOT": settings.storage_root,
    }


@pytest.fixture
def in_process_cli(monkeypatch, capsys):
    """Run ``lwmecps`` in this process with the given environment; yields ``run(args, env) -> (status, out, err)``."""

    def run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        close_client()
        try:
            status = main(args)
        finally:
            close_client()
            get_settings.cache_clear()
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def test_cli_backup_restore_and_one_line_errors(db, restored_db, settings, tmp_path, in_process_cli):
    populate(db, settings)
    env = {**os.environ, **cli_env(settings, db.name)}
    out = subprocess.run([str(LWMECPS), "backup", str(tmp_path / "bk")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "dumping collection tasks ..." in out.stdout and "backup written to" in out.stdout

    env_r = cli_env(settings.model_copy(update={"storage_root": str(tmp_path / "storage_r")}), db.name)
    status, stdout, _ = in_process_cli(["restore", str(tmp_path / "bk"), "--db", restored_db.name], env_r)
    assert status == 0 and f"restored 7 collections into '{restored_db.name}'" in stdout
    assert tasks.list_tasks(restored_db).total == 2
    assert files(tmp_path / "storage_r") == files(settings.local_storage)

    for args, message in [
        (["restore", str(tmp_path / "bk"), "--db", restored_db.name], "is not empty"),
        (["restore", str(tmp_path / "nowhere")], "is not a directory"),
        (["restore", str(tmp_path)], "no manifest.json"),
        (["backup", str(tmp_path / "bk")], "exists and is not empty"),
        (["backup", str(tmp_path / "bk2"), "--db", "Bad-Name"], "--db must match"),
    ]:
        status, _, err = in_process_cli(args, env_r)
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert message in lines[0]
