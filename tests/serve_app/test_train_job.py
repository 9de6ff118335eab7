"""The training job entrypoint (``python -m serve_app.train_job``) as a subprocess with its own local Ray, against
the session's nx-27017 server: a 2-trial Tune search logged to W&B offline registers the best trial's model, records
every trial and its W&B run, and never writes the W&B key anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo.database import Database

from serve_app.api.validation import task_spec
from serve_app.schemas import TrainingTaskCreate
from serve_app.settings import Settings
from serve_app.store import metrics, models, tasks

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FAKE_KEY = "fake-wandb-key-0123456789abcdef0123456789"
SEARCH = {
    "name": "search",
    "preset": "testapp-ppo",
    "hparams": {"train_batch_size": 200, "minibatch_size": 50, "num_epochs": 1, "fcnet_hiddens": [16]},
    "search_space": {"lr": {"type": "grid_search", "values": [1e-4, 1e-3]}},
    "stop": {"training_iteration": 1},
    "wandb": {"mode": "offline", "project": "lwmecps-tests", "api_key": FAKE_KEY},
}


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_search_job_registers_the_best_trial_and_logs_to_wandb_offline(db: Database, settings: Settings) -> None:
    body = TrainingTaskCreate.model_validate(SEARCH)
    task = tasks.create_task(db, task_spec(body, "tester", settings), secrets={"wandb_api_key": "ciphertext"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LWMECPS_", "RAY_ADDRESS", "WANDB_"))}
    env |= {
        "LWMECPS_MONGODB_URI": str(settings.mongodb_uri),
        "LWMECPS_MONGODB_DB": db.name,
        "LWMECPS_DATA_DIR": str(settings.data_dir),
        "LWMECPS_STORAGE_ROOT": settings.storage_root,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "WANDB_MODE": "disabled",  # the task's own mode (offline) wins
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "WANDB_API_KEY": FAKE_KEY,  # how a per-task key reaches a job: its runtime environment
    }
    job = subprocess.run(
        [sys.executable, "-m", "serve_app.train_job", "--task-id", task["id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = job.stdout + job.stderr
    assert job.returncode == 0, logs[-3000:]

    done = tasks.get_task(db, task["id"])
    assert done["status"] == "completed" and done["progress"] == 1.0, done
    trials = done["trials"]
    assert sorted(t["config"]["lr"] for t in trials) == [1e-4, 1e-3]
    assert all(t["metrics"]["training_iteration"] == 1 and t["error"] is None for t in trials), trials
    assert done["iteration"] == 2  # iterations summed over both trials

    model = models.get_model(db, done["model_id"])
    assert model["trial_id"] == done["best_trial"] in {t["trial_id"] for t in trials}
    assert model["trial_config"]["lr"] in (1e-4, 1e-3)
    from policies.rllib.export import load_export

    policy = load_export(Path(model["export_uri"]))
    assert list(policy.layout.nvec) == [5, 5, 5, 5]

    points = [p["values"] for p in metrics.series(db, kind="training", task_id=task["id"])]
    assert sorted({p["trial"] for p in points}) == [0, 1] and len(points) == 2
    progress = [p["progress"] for p in points]
    assert progress == [0.5, 1.0]  # the mean over both trials of their budget fractions

    run = done["wandb_run"]
    run_dir = Path(run["dir"])
    assert run["mode"] == "offline" and run_dir.name.startswith("offline-run-") and run_dir.name.endswith(run["id"])
    assert run_dir.is_dir() and run_dir.is_relative_to(settings.data_dir)
    assert list(run_dir.glob("*.wandb")), sorted(p.name for p in run_dir.iterdir())
    assert _files_containing(settings.data_dir, FAKE_KEY) == []
    assert _files_containing(Path(settings.storage_root), FAKE_KEY) == []
    assert FAKE_KEY not in str(db["tasks"].find_one({})) and FAKE_KEY not in logs
