"""``lwmecps evaluate`` in simulation: a mix of baselines and the optimum, tables and plots, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_evaluate_mix_writes_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev"
    argv = [
        "evaluate",
        "--scenario",
        "testapp-4bs",
        "--policy",
        "static-4",
        "--policy",
        "opt=optimum",
        "--policy",
        "random",
        "--seeds",
        "2",
        "--hours",
        "0.05",
        "--start-hour",
        "21",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    table = (out / "results.md").read_text()
    for label in ("static-4", "opt", "random"):
        assert f"| {label} " in table
    result = json.loads((out / "results.json").read_text())
    rewards = {r["policy"]: r["reward"] for r in result["rollouts"] if r["seed"] == 0}
    assert rewards["opt"] >= rewards["static-4"]  # the per-slot optimum is never worse than a static policy
    assert len(result["rollouts"]) == 6  # 3 policies x 2 seeds
    assert (out / "latency_over_day.png").read_bytes()[:8] == PNG
    assert "static-4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--policy", "magic"], "unknown policy 'magic'"),
        (["--policy", "export:/no/such/dir"], "no such directory"),
        (["--policy", "static-1", "--seeds", "0"], "--seeds"),
        (["--policy", "static-1", "--hours", "30"], "--hours"),
        (["--policy", "static-1", "--policy", "static-1"], "given twice"),
        (["--policy", "static-1", "--learning-curve", "x=/nope.csv"], "--learning-curve"),
    ],
)
def test_evaluate_bad_input_is_one_line(extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--scenario", "testapp-4bs", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
