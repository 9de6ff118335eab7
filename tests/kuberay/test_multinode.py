"""Multi-node Ray on this machine (ray.cluster_utils.Cluster: a head and a worker node): env runners are placed on
the worker node and a short training run completes; the service's PolicyServer answers over HTTP with one replica
on each node. Runs ``multinode_run.py`` in a subprocess, away from the suite's session Ray runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SCRIPT = Path(__file__).resolve().parent / "multinode_run.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("multinode")
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "WANDB_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every listener on 127.0.0.1
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=420, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    return dict(json.loads(lines[-1].removeprefix("REPORT ")))


def test_two_distinct_nodes_are_alive(report):
    assert report["nodes_alive"] == 2
    assert report["head"] != report["worker"]


def test_env_runners_are_scheduled_on_the_worker_node(report):
    assert report["env_runner_nodes"] == [report["worker"]]
    assert report["healthy_env_runners"] == 1


def test_training_completes_with_samples_from_the_worker(report):
    assert report["iterations"] == [1, 2]
    assert report["env_steps_sampled"] >= 2 * 256  # all sampling happens on the remote env runner


def test_policy_replicas_on_both_nodes_answer_over_http(report):
    answers = report["answers"]
    assert {a["node"] for a in answers} == {report["head"], report["worker"]}
    assert len({json.dumps(a["actions"]) for a in answers}) == 1  # the same export gives the same greedy action
    (actions,) = answers[0]["actions"]
    assert len(actions) == 4 and all(isinstance(x, int) and x >= 0 for x in actions)  # one replica count per station
