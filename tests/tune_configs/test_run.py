"""Tune runs end to end: two trials of one iteration, results read back from disk, and an offline W&B run."""

import csv
import json
from pathlib import Path

import pytest

from tune_configs import PresetError
from tune_configs.run import SUMMARY_FILE, run
from tune_configs.testapp_ppo import PRESET as TESTAPP_PPO

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = {"train_batch_size": 256, "minibatch_size": 128, "num_epochs": 1}
ONE_ITER = {"training_iteration": 1}


def test_two_trial_run_reads_back(tmp_path, ray_runtime):
    summary = run(
        "testapp-ppo", storage_path=tmp_path, overrides=TINY, stop=ONE_ITER, num_samples=2, seed=3, wandb="disabled"
    )
    exp = Path(summary["experiment_path"])
    assert exp.parent == tmp_path and exp.name == summary["name"]
    assert json.loads((exp / SUMMARY_FILE).read_text()) == summary
    assert (summary["num_trials"], summary["num_errors"]) == (2, 0)

    trial_dirs = sorted(p for p in exp.iterdir() if (p / "result.json").exists())
    assert len(trial_dirs) == 2
    seeds = set()
    for trial in trial_dirs:
        last = json.loads((trial / "result.json").read_text().splitlines()[-1])
        assert last["training_iteration"] == 1 and last["num_env_steps_sampled_lifetime"] >= TINY["train_batch_size"]
        with (trial / "progress.csv").open() as f:
            assert [int(r["training_iteration"]) for r in csv.DictReader(f)] == [1]
        params = json.loads((trial / "params.json").read_text())
        assert params["lr"] == TESTAPP_PPO.hparams["lr"] and params["train_batch_size"] == TINY["train_batch_size"]
        seeds.add(params["seed"])
    assert seeds == {3, 4}
    assert {Path(t["checkpoint"]).parent for t in summary["trials"]} == set(trial_dirs)
    assert all(Path(t["checkpoint"]).is_dir() for t in summary["trials"])
    assert summary["best"]["trial_id"] in {t["trial_id"] for t in summary["trials"]}

    # same inputs -> same name -> refused rather than mixed into the finished run, unless resumed
    again = {"storage_path": tmp_path, "overrides": TINY, "stop": ONE_ITER, "num_samples": 2, "seed": 3}
    with pytest.raises(PresetError, match="already exists"):
        run("testapp-ppo", **again)
    resumed = run("testapp-ppo", **again, resume=True, wandb="disabled")
    assert resumed["name"] == summary["name"] and resumed["num_errors"] == 0

    # a resumed finished run reports the same trials at the same point (wall-clock metrics may differ)
    def progress(s):
        keys = ("training_iteration", "num_env_steps_sampled_lifetime")
        return sorted((t["trial_id"], *(t["metrics"][k] for k in keys)) for t in s["trials"])

    assert progress(resumed) == progress(summary)


def test_offline_wandb_run_without_api_key(tmp_path, monkeypatch, ray_runtime):
    key = "fake-wandb-key-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_API_KEY", key)
    summary = run("testapp-ppo", storage_path=tmp_path, overrides=TINY, stop=ONE_ITER)
    assert summary["wandb_mode"] == "offline" and summary["num_errors"] == 0

    runs = list(Path(summary["experiment_path"]).glob("*/wandb/offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and not [p for p in files if key.encode() in p.read_bytes()]
    assert __import__("os").environ["WANDB_API_KEY"] == key  # hidden during the run only
