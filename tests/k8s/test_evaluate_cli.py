"""``lwmecps evaluate --cluster``: the same report as in simulation, measured on the (fake) cluster."""

from __future__ import annotations

import json

import yaml

from serve_app.cli import main

NODES = {f"bs{i}": ("2", "4Gi") for i in range(1, 5)}


def test_evaluate_on_a_cluster_reuses_the_cli(cluster_factory, testapp, tmp_path, capsys):
    cluster, kubeconfig = cluster_factory(NODES)
    spec = {
        "kubeconfig": kubeconfig,
        "testapp_url": testapp.url,
        "group_id": "g1",
        "experiments": {f"exp-bs{i}": ["testapp", f"bs{i}"] for i in range(1, 5)},
        "image": "registry.local/lwmecps/testapp-server:1",
        "dry_run": False,
        "max_changes_per_step": None,
        "rollout_timeout_s": 2.0,
        "poll_interval_s": 0.01,
        "slot_seconds": 0,
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    argv = [
        "evaluate",
        "--scenario",
        "testapp-4bs",
        "--policy",
        "static-2",
        "--policy",
        "optimized-balance",
        "--seeds",
        "1",
        "--hours",
        "0.01",
        "--start-hour",
        "21",
        "--cluster",
        str(path),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    names = {r["policy"] for r in result["rollouts"]}
    assert names == {"static-2", "optimized-balance"}
    assert cluster.replicas_ready()  # the cluster really ran the placements: deployments exist and are ready
    assert "static-2" in capsys.readouterr().out


def test_evaluate_bad_cluster_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "cluster.yaml"
    path.write_text("kubeconfig: /nope\n")
    argv = ["evaluate", "--scenario", "testapp-4bs", "--policy", "static-2", "--cluster", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing key 'testapp_url'" in err[0]
