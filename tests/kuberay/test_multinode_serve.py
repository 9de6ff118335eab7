"""The real Serve application (``serve_app.app:build_app``: ingress + policy server + loop runner) on two Ray nodes
(``ray.cluster_utils.Cluster``, a head and a worker on this machine) with the embedded MongoDB: one ingress and one
policy replica per node, models deployed over REST, predicts over real HTTP answered by replicas on both nodes, and
no Ray process or database server left behind. Runs ``multinode_serve_run.py`` in a subprocess, away from the
suite's session Ray runtime."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SCRIPT = Path(__file__).resolve().parent / "multinode_serve_run.py"
NVEC = (5, 5, 5, 5)  # lwmecps/TestApp4BS-v0: replicas 0..4 at each of 4 stations


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_lwmecps_multinode_serve_run", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("multinode_serve")
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWMECPS_") and k != "RAY_ADDRESS"}
    env |= {
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "WANDB_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every listener on 127.0.0.1
        _script().MARKER: token,  # inherited by every process of the run
    }
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    return {**json.loads(lines[-1].removeprefix("REPORT ")), "token": token}


def _nodes_of(report: dict[str, Any], deployment: str) -> list[str]:
    return sorted(r["node"] for r in report["replicas"].values() if r["deployment"] == deployment)


def test_two_distinct_nodes_are_alive(report):
    assert report["nodes_alive"] == 2
    assert report["head"] != report["worker"]
    assert report["app_status"] == "ApplicationStatus.RUNNING"


def test_one_ingress_and_one_policy_replica_on_each_node(report):
    both = sorted([report["head"], report["worker"]])
    assert _nodes_of(report, "Ingress") == both
    assert _nodes_of(report, "PolicyServer") == both
    assert len(_nodes_of(report, "LoopRunner")) == 1


def test_deployed_models_answer_valid_placements_over_http(report):
    assert len(report["deployments"]) == len(set(report["deployments"])) >= 2
    mask = np.asarray(report["action_mask"])
    offsets = np.concatenate([[0], np.cumsum(NVEC)[:-1]])
    for answer in report["answers"]:
        assert answer["status"] == 200, answer
        placement = answer["body"]["placement"]
        assert len(placement) == len(NVEC)
        assert all(mask[offsets[k] + n] > 0 for k, n in enumerate(placement))  # allowed by the mask
    assert {a["body"]["deployment_id"] for a in report["answers"]} == set(report["deployments"])


def test_requests_are_served_by_replicas_on_both_nodes(report):
    replicas = report["replicas"]
    ingress_nodes: set[str] = set()
    policy_nodes: set[str] = set()
    for request_id, uids in report["served_by"].items():
        kinds = sorted(replicas[uid]["deployment"] for uid in uids)
        assert kinds == ["Ingress", "PolicyServer"], (request_id, uids)  # one hop each, logged under the same id
        for uid in uids:
            nodes = ingress_nodes if replicas[uid]["deployment"] == "Ingress" else policy_nodes
            nodes.add(replicas[uid]["node"])
    assert len(report["served_by"]) == len(report["answers"])
    assert ingress_nodes == policy_nodes == {report["head"], report["worker"]}


def test_no_ray_process_or_database_server_outlives_the_run(report):
    seen = {int(pid) for pid in report["processes"]}
    assert {r["pid"] for r in report["replicas"].values()} <= seen  # the marker does reach the replica workers
    assert report["mongo_pid"] in seen
    assert len(seen) > len(report["replicas"]) + 1  # and the nodes' own processes (GCS, raylets, Serve, ...)
    assert report["left_after_shutdown"] == []
    assert _script().marked_processes(report["token"]) == {}  # nothing of the run is left now that it exited
