"""The README's run command's job, end to end with a tiny budget: train, export, evaluate, plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_trains_evaluates_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "serve_app.cli", "demo", "--train-seconds", "3", "--eval-hours", "0.05",
           "--seeds", "2", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "training PPO" in proc.stdout and "iter" in proc.stdout  # progress is shown
    for name in ("learning_curve.png", "latency_over_day.png", "city.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    table = (out / "results.md").read_text()
    for policy in ("ppo", "static-3", "static-4", "optimized-balance", "random"):
        assert f"| {policy} " in table
    meta = json.loads((out / "export" / "metadata.json").read_text())
    assert meta["env_id"] == "lwmecps/TestApp4BS-v0" and meta["algorithm"] == "PPO"
