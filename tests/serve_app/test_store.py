"""Storage against a real nx-27017 server: indexes, repositories, lifecycle rules, pagination, embedded server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId

from serve_app.settings import Settings
from serve_app.store import (
    ConflictError,
    InvalidIdError,
    InvalidTransitionError,
    NotFoundError,
    deployments,
    metrics,
    models,
    tasks,
    users,
)
from serve_app.store import client as store_client
from serve_app.store.client import INDEXES, EmbeddedMongo, connect, ensure_indexes

WANTED_KEYS = {
    "tasks": ({"status"}, False),
    "models": ({"type", "status"}, False),
    "metrics": ({"timestamp"}, False),
    "deployments": ({"model_id"}, False),
    "users": ({"username"}, True),
    "loops": ({"status"}, False),
    "decisions": ({"loop_id", "timestamp"}, False),
}


def index_fields(coll) -> list[tuple[set[str], bool]]:
    """(field names, unique) of each non-_id index (names and directions are not relied on)."""
    out = []
    for info in coll.list_indexes():
        fields = {k for k, _ in info["key"].items()}
        if fields != {"_id"}:
            out.append((fields, bool(info.get("unique", False))))
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone when /proc says so
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def servers_on(data_dir: Path) -> list[int]:
    """Pids of live nx-27017 processes serving ``data_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            any(a.endswith(b"nx-27017") for a in argv[:2])
            and str(data_dir).encode() in argv
            and pid_alive(int(proc.name))
        ):
            pids.append(int(proc.name))
    return pids


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


# -- indexes ---------------------------------------------------------------------------------------------------


def test_indexes_exist_and_ensure_is_idempotent(db):
    ensure_indexes(db)  # second time (the fixture ran it once)
    assert set(INDEXES) == set(WANTED_KEYS)
    for name, wanted in WANTED_KEYS.items():
        assert index_fields(db[name]) == [wanted], name


# -- ids -------------------------------------------------------------------------------------------------------

GETTERS = [tasks.get_task, models.get_model, deployments.get_deployment, tasks.delete_task, models.delete_model]


@pytest.mark.parametrize("getter", GETTERS, ids=lambda f: f.__name__)
def test_malformed_id_is_distinct_from_unknown_id(db, getter):
    for bad in ("nope", "123", "g" * 24, ""):
        with pytest.raises(InvalidIdError, match="not a valid id"):
            getter(db, bad)
    with pytest.raises(NotFoundError, match="not found"):
        getter(db, str(ObjectId()))


# -- tasks -----------------------------------------------------------------------------------------------------


def test_task_create_get_update_delete(db):
    task = tasks.create_task(db, {"name": "t1", "preset": "ppo_quick", "owner": "ann"}, secrets={"wandb": "CIPHER"})
    assert isinstance(task["id"], str) and task["status"] == "pending" and task["progress"] == 0.0
    assert "secrets" not in task and "_id" not in task
    assert task["created_at"].tzinfo is not None
    raw = db.tasks.find_one({"_id": ObjectId(task["id"])})
    assert raw["secrets"] == {"wandb": "CIPHER"}  # stored, never returned
    got = tasks.get_task(db, task["id"])
    assert got == task
    assert tasks.get_secret(db, task["id"], "wandb") == "CIPHER"
    assert tasks.get_secret(db, task["id"], "kubeconfig") is None
    updated = tasks.update_task(db, task["id"], {"ray_job_id": "raysubmit_1", "hparams": {"lr": 0.001}})
    assert updated["ray_job_id"] == "raysubmit_1" and updated["hparams"] == {"lr": 0.001}
    assert updated["updated_at"] >= task["updated_at"]
    started = datetime(2030, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    typed = tasks.update_task(db, task["id"], {"started_at": started, "resumed": True, "source": ObjectId()})
    again = tasks.get_task(db, task["id"])  # BSON types survive an update (nx-27017 loses them on its fast path)
    for doc in (typed, again):
        assert doc["started_at"] == started and doc["resumed"] is True and isinstance(doc["source"], ObjectId)
        assert isinstance(doc["updated_at"], datetime)
    with pytest.raises(ValueError, match="status"):
        tasks.update_task(db, task["id"], {"status": "completed"})
    with pytest.raises(ValueError, match="status"):
        tasks.create_task(db, {"name": "x", "status": "running"})
    deleted = tasks.delete_task(db, task["id"])
    assert deleted["id"] == task["id"] and "secrets" not in deleted
    with pytest.raises(NotFoundError):
        tasks.get_task(db, task["id"])


def test_task_lifecycle_allows_only_legal_transitions(db):
    t = tasks.create_task(db, {"name": "life"})["id"]
    with pytest.raises(InvalidTransitionError, match="pending"):
        tasks.set_status(db, t, "completed")
    with pytest.raises(InvalidTransitionError, match="pending"):
        tasks.append_progress(db, t, iteration=1, progress=0.1)  # not running yet
    assert tasks.set_status(db, t, "running", ray_job_id="j1")["ray_job_id"] == "j1"
    with pytest.raises(InvalidTransitionError):
        tasks.set_status(db, t, "pending")
    done = tasks.set_status(db, t, "completed", model_id="m1")
    assert done["status"] == "completed" and done["progress"] == 1.0 and done["model_id"] == "m1"
    for target in ("running", "failed", "cancelled", "completed"):
        with pytest.raises(InvalidTransitionError, match="is completed"):
            tasks.set_status(db, t, target)
    with pytest.raises(InvalidTransitionError, match="cancel"):
        tasks.request_cancel(db, t)
    with pytest.raises(ValueError, match="status must be one of"):
        tasks.set_status(db, t, "paused")
    with pytest.raises(NotFoundError):
        tasks.set_status(db, str(ObjectId()), "running")


def test_cancel_flag_then_cancelled(db):
    pending = tasks.create_task(db, {"name": "p"})["id"]
    running = tasks.create_task(db, {"name": "r"})["id"]
    tasks.set_status(db, running, "running")
    for t in (pending, running):
        flagged = tasks.request_cancel(db, t)
        assert flagged["cancel_requested"] is True
        assert flagged["status"] in tasks.ACTIVE  # the flag alone does not end the task
        assert tasks.set_status(db, t, "cancelled")["status"] == "cancelled"


def test_concurrent_status_changes_have_one_winner(db):
    t = tasks.create_task(db, {"name": "race"})["id"]
    tasks.set_status(db, t, "running")
    wins: list[str] = []
    losses: list[str] = []

    def finish(status: str) -> None:
        try:
            tasks.set_status(db, t, status)
            wins.append(status)
        except InvalidTransitionError:
            losses.append(status)

    threads = [threading.Thread(target=finish, args=(s,)) for s in ["completed", "failed", "cancelled"] * 3]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(wins) == 1 and len(losses) == 8
    assert tasks.get_task(db, t)["status"] == wins[0]


def test_progress_updates_task_and_records_a_series(db):
    t = tasks.create_task(db, {"name": "prog"})["id"]
    tasks.set_status(db, t, "running")
    for i in range(1, 4):
        latest = tasks.append_progress(db, t, iteration=i, progress=i / 4, metrics_values={"reward": float(10 * i)})
    assert latest["iteration"] == 3 and latest["progress"] == 0.75 and latest["latest_metrics"] == {"reward": 30.0}
    points = metrics.series(db, task_id=t, kind="training")
    assert [p["values"]["iteration"] for p in points] == [1, 2, 3]
    assert [p["values"]["reward"] for p in points] == [10.0, 20.0, 30.0]
    with pytest.raises(ValueError, match="progress"):
        tasks.append_progress(db, t, iteration=4, progress=1.5)


def test_list_tasks_paginates_newest_first_with_status_filter(db):
    ids = [tasks.create_task(db, {"name": f"t{i}", "owner": "ann" if i % 2 else "bob"})["id"] for i in range(7)]
    for t in ids[:3]:
        tasks.set_status(db, t, "running")
    pages = [tasks.list_tasks(db, skip=s, limit=3) for s in (0, 3, 6)]
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert all(p.total == 7 for p in pages)
    assert [item["id"] for p in pages for item in p.items] == ids[::-1]
    running = tasks.list_tasks(db, status="running")
    assert running.total == 3 and {i["id"] for i in running.items} == set(ids[:3])
    active = tasks.list_tasks(db, status=["pending", "running"], limit=2)
    assert active.total == 7 and len(active.items) == 2
    assert tasks.list_tasks(db, owner="ann").total == 3
    assert tasks.list_tasks(db, status="failed").items == []
    with pytest.raises(ValueError, match="limit"):
        tasks.list_tasks(db, limit=0)
    with pytest.raises(ValueError, match="skip"):
        tasks.list_tasks(db, skip=-1)
    with pytest.raises(ValueError, match="status must be one of"):
        tasks.list_tasks(db, status="bogus")


# -- metrics ---------------------------------------------------------------------------------------------------


def test_metric_counts_by_status_and_time_window(db):
    statuses = ["running", "running", "failed", "completed", "completed", "completed"]
    for status in statuses:
        t = tasks.create_task(db, {"name": status})["id"]
        tasks.set_status(db, t, "running")
        if status != "running":
            tasks.set_status(db, t, status)
    tasks.create_task(db, {"name": "waiting"})
    counts = metrics.counts_by(db, "tasks", zero_fill=tasks.STATUSES)
    assert counts == {"pending": 1, "running": 2, "completed": 3, "failed": 1, "cancelled": 0}

    dep = str(ObjectId())
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    for i in (3, 0, 2, 1):  # inserted out of order
        metrics.record(
            db,
            "predict",
            {"latency_ms": float(i)},
            deployment_id=dep,
            timestamp=t0 + timedelta(seconds=i),
        )
    metrics.record(db, "training", {"x": 1.0}, timestamp=t0)
    series = metrics.series(db, deployment_id=dep)
    assert [p["values"]["latency_ms"] for p in series] == [0.0, 1.0, 2.0, 3.0]
    assert [p["timestamp"] for p in series] == [t0 + timedelta(seconds=i) for i in range(4)]
    window = metrics.series(db, kind="predict", since=t0 + timedelta(seconds=1), until=t0 + timedelta(seconds=3))
    assert [p["values"]["latency_ms"] for p in window] == [1.0, 2.0]
    assert metrics.counts_by(db, "metrics", "kind") == {"predict": 4, "training": 1}
    assert metrics.delete_for(db, deployment_id=dep) == 4
    with pytest.raises(ValueError, match="metric kind"):
        metrics.record(db, "Bad-Kind", {})
    with pytest.raises(ValueError, match="collection name"):
        metrics.counts_by(db, "tasks.x")


# -- models and deployments ------------------------------------------------------------------------------------


def test_models_register_list_mark_delete(db):
    task = tasks.create_task(db, {"name": "src"})["id"]
    a = models.register_model(db, name="a", type="ppo", artifact_uri="/s/models/a", task_id=task, info={"iters": 3})
    b = models.register_model(db, name="b", type="dqn", artifact_uri="/s/models/b")
    c = models.register_model(db, name="c", type="ppo", artifact_uri="/s/models/c", status="failed")
    assert a["task_id"] == task and a["iters"] == 3 and a["status"] == "ready"
    chosen = str(ObjectId())
    assert models.register_model(db, name="d", type="ppo", artifact_uri="/s/d", model_id=chosen)["id"] == chosen
    assert models.delete_model(db, chosen)["name"] == "d"
    with pytest.raises(InvalidIdError):
        models.register_model(db, name="e", type="ppo", artifact_uri="/s/e", model_id="nope")
    assert models.get_model(db, b["id"]) == b
    assert {m["id"] for m in models.list_models(db, type="ppo").items} == {a["id"], c["id"]}
    assert [m["id"] for m in models.list_models(db, type="ppo", status="ready").items] == [a["id"]]
    assert models.mark_status(db, a["id"], "deployed")["status"] == "deployed"
    assert models.list_models(db, status="deployed").total == 1
    assert models.delete_model(db, c["id"])["artifact_uri"] == "/s/models/c"
    assert models.list_models(db).total == 2
    with pytest.raises(ValueError, match="status must be one of"):
        models.mark_status(db, a["id"], "bogus")
    with pytest.raises(ValueError, match="must not set"):
        models.register_model(db, name="x", type="ppo", artifact_uri="/x", info={"status": "ready"})


def test_deployments_crud(db):
    m1, m2 = str(ObjectId()), str(ObjectId())
    d1 = deployments.create_deployment(db, model_id=m1, name="d1", config={"replicas": 1})
    d2 = deployments.create_deployment(db, model_id=m2, name="d2")
    assert d1["status"] == "pending" and d1["model_id"] == m1
    assert [d["id"] for d in deployments.list_deployments(db, model_id=m1).items] == [d1["id"]]
    running = deployments.update_status(db, d1["id"], "running", replicas=2)
    assert running["status"] == "running" and running["replicas"] == 2 and running["config"] == {"replicas": 1}
    assert deployments.list_deployments(db, status="running").total == 1
    assert deployments.delete_deployment(db, d2["id"])["name"] == "d2"
    assert deployments.list_deployments(db).total == 1
    with pytest.raises(InvalidIdError):
        deployments.create_deployment(db, model_id="not-an-id", name="x")
    with pytest.raises(ValueError, match="cannot set"):
        deployments.update_status(db, d1["id"], "running", model_id=m2)


# -- users -----------------------------------------------------------------------------------------------------


def test_users_crud_and_authentication(db):
    ann = users.create_user(db, "ann", "correct horse", "operator")
    assert ann["role"] == "operator" and "password_hash" not in ann
    assert db.users.find_one({"username": "ann"})["password_hash"].startswith("scrypt$")
    with pytest.raises(ConflictError, match="taken"):
        users.create_user(db, "ann", "another password", "viewer")
    users.create_user(db, "bob", "bob password")
    assert [u["username"] for u in users.list_users(db).items] == ["ann", "bob"]
    assert users.get_user(db, "bob")["role"] == "viewer"
    assert users.authenticate(db, "ann", "correct horse")["username"] == "ann"
    assert users.authenticate(db, "ann", "wrong horse") is None
    assert users.authenticate(db, "nobody", "correct horse") is None
    assert users.update_role(db, "bob", "admin")["role"] == "admin"
    users.set_password(db, "bob", "new bob password")
    assert users.authenticate(db, "bob", "bob password") is None
    assert users.authenticate(db, "bob", "new bob password") is not None
    users.delete_user(db, "bob")
    with pytest.raises(NotFoundError):
        users.get_user(db, "bob")
    with pytest.raises(ValueError, match="role must be one of"):
        users.update_role(db, "ann", "root")
    with pytest.raises(ValueError, match="password"):
        users.create_user(db, "carl", "short")
    with pytest.raises(ValueError, match="username"):
        users.create_user(db, "bad name!", "long enough password")


# -- the embedded server and the process client ------------------------------------------------------------------


def test_embedded_server_stops_and_data_survives_restart(tmp_path):
    data = tmp_path / "mongo"
    server = EmbeddedMongo(data)
    server.start()
    pid = server.pid
    assert pid is not None and json.loads((data / "server.json").read_text())["pid"] == pid
    client = connect(server.uri)
    db = client["keep"]
    ensure_indexes(db)
    users.create_user(db, "ann", "long enough password")
    client.close()
    server.stop()
    assert wait_gone(pid), "nx-27017 still running after stop()"
    assert not (data / "server.json").exists()

    with EmbeddedMongo(data) as again:
        assert again.pid != pid
        client = connect(again.uri)
        assert users.authenticate(client["keep"], "ann", "long enough password") is not None
        with pytest.raises(ConflictError):  # the unique index survived too
            users.create_user(client["keep"], "ann", "long enough password")
        attached = EmbeddedMongo(data)  # a second process on the same data dir uses the running server
        assert attached.start() == again.uri and not attached.owned and attached.pid is None
        attached.stop()
        assert client.admin.command("ping")["ok"] == 1  # detaching did not stop the owner's server
        client.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_server_dies_with_its_parent(tmp_path, sig):
    code = (
        "import sys, time; from serve_app.store.client import EmbeddedMongo; "
        f"m = EmbeddedMongo({str(tmp_path)!r}); m.start(); print(m.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert servers_on(tmp_path) == [child]
    finally:
        parent.send_signal(sig)  # SIGKILL: no atexit, no handler, only PR_SET_PDEATHSIG stops the child
        parent.wait()
    assert parent.returncode == -sig  # the SIGTERM handler stops the server, then dies of the signal as before
    assert wait_gone(child), "nx-27017 outlived its parent"


def test_start_timeout_is_a_clear_error_and_leaves_no_process(tmp_path):
    server = EmbeddedMongo(tmp_path, startup_timeout_s=0.0)
    with pytest.raises(store_client.MongoStartError, match=r"did not answer within 0 s; log tail"):
        server.start()
    assert server.process is None and server.port is None
    assert not (tmp_path / "server.json").exists()
    assert servers_on(tmp_path) == []


def test_get_client_with_uri_starts_nothing(mongo_server, tmp_path):
    settings = Settings.explicit(mongodb_uri=mongo_server.uri, mongodb_db="t_uri_db", data_dir=tmp_path)
    store_client.close_client()
    try:
        first = store_client.get_client(settings)
        assert store_client.get_client(settings) is first  # one client per process
        assert store_client.get_db(settings).name == "t_uri_db"
        assert first.admin.command("ping")["ok"] == 1
        assert not (tmp_path / "mongo").exists()
        other = Settings.explicit(data_dir=tmp_path / "other")
        with pytest.raises(RuntimeError, match="already has a MongoDB client"):
            store_client.get_client(other)
    finally:
        store_client.close_client()


def test_get_client_without_uri_runs_embedded_until_closed(tmp_path):
    settings = Settings.explicit(data_dir=tmp_path, mongodb_db="t_embedded")
    store_client.close_client()
    try:
        db = store_client.get_db(settings)
        db.tasks.insert_one({"x": 1})
        info = json.loads((tmp_path / "mongo" / "server.json").read_text())
        assert (
            pid_alive(info["pid"])
            and store_client.client_uri() == f"mongodb://127.0.0.1:{info['port']}/?directConnection=true"
        )
    finally:
        store_client.close_client()
    assert wait_gone(info["pid"])
    assert (tmp_path / "mongo" / "t_embedded.db").exists()
