"""The ``lwmecps`` command line: plots, scenario validate/show, and one-line errors on bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from envs.presets import PRESETS, get_scenario
from envs.scenario import load_scenario
from envs.world import build_world
from serve_app.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LWMECPS = Path(sys.executable).parent / "lwmecps"

TINY = {
    "name": "tiny",
    "nodes": [
        {"name": "a", "x_km": 0.0, "y_km": 0.0, "cpu": 4.0, "ram_mib": 4096.0},
        {"name": "b", "x_km": 1.0, "y_km": 0.0, "cpu": 4.0, "ram_mib": 4096.0},
    ],
    "services": [{"name": "web", "cpu": 0.5, "ram_mib": 256.0, "rate": 50.0, "max_replicas": 2}],
    "demand": {"base_users": 20, "request_rate": 0.5},
}


def pixels(path: Path) -> np.ndarray:
    """Check ``path`` is a sensibly sized PNG and return its pixels."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width > 400 and img.height > 300
        return np.asarray(img.convert("RGB"))


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_plot_city_differs_between_hours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    night, evening = tmp_path / "night.png", tmp_path / "evening.png"
    for hour, out in ((3, night), (21, evening)):
        assert main(["plot", "city", "--scenario", "testapp-4bs", "--hour", str(hour), "--out", str(out)]) == 0
    assert "building world testapp-4bs" in capsys.readouterr().out
    a, b = pixels(night), pixels(evening)
    assert a.shape == b.shape
    assert (a != b).any(axis=-1).mean() > 0.01  # the cells' shading changes, not a pixel or two


def test_plot_city_shows_the_chosen_placement(tmp_path: Path) -> None:
    outs = [tmp_path / "initial.png", tmp_path / "static4.png"]
    for placement, out in zip(("initial", "static-4"), outs, strict=True):
        args = ["plot", "city", "--scenario", "testapp-4bs", "--trace", "B", "--slot", "5000"]
        assert main([*args, "--placement", placement, "--out", str(out)]) == 0
    assert (pixels(outs[0]) != pixels(outs[1])).any()


def test_plot_demand_from_a_scenario_file(tmp_path: Path) -> None:
    scenario = write_yaml(tmp_path / "tiny.yaml", TINY)
    outs = [tmp_path / "t0.png", tmp_path / "t1.png"]
    for trace, out in zip(("0", "1"), outs, strict=True):
        assert main(["plot", "demand", "--scenario", str(scenario), "--trace", trace, "--out", str(out)]) == 0
    assert (pixels(outs[0]) != pixels(outs[1])).any()  # another mobility and noise realisation


def test_console_script_plots_and_reports_errors(tmp_path: Path) -> None:
    assert LWMECPS.exists(), "the lwmecps console script is not installed"
    out = tmp_path / "city.png"
    ok = subprocess.run(
        [str(LWMECPS), "plot", "city", "--scenario", "reference-city", "--placement", "static-1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "building world reference-city" in ok.stdout and "running static-1" in ok.stdout
    pixels(out)
    bad = write_yaml(tmp_path / "bad.yaml", {**TINY, "nodes": [{**TINY["nodes"][0], "cpu": -1}]})
    fail = subprocess.run([str(LWMECPS), "scenario", "validate", str(bad)], capture_output=True, text=True, timeout=120)
    assert fail.returncode == 2
    assert names_field(one_error_line(fail.stderr), "nodes.0.cpu")


@pytest.mark.parametrize("preset", list(PRESETS))
def test_show_round_trips_through_validate(preset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "show", preset]) == 0
    path = tmp_path / f"{preset}.yaml"
    path.write_text(capsys.readouterr().out)
    assert main(["scenario", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    original, loaded = build_world(get_scenario(preset)), build_world(load_scenario(path))
    assert f"{original.n_nodes} nodes" in out and f"over {original.n_slots} deployment slots" in out
    np.testing.assert_array_equal(original.node_xy, loaded.node_xy)
    np.testing.assert_array_equal(original.slot_node, loaded.slot_node)
    np.testing.assert_array_equal(original.net_ms, loaded.net_ms)
    key = original.demand.default_key
    np.testing.assert_array_equal(original.demand.trace(key), loaded.demand.trace(key))


def test_validate_summarises_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "validate", str(write_yaml(tmp_path / "tiny.yaml", TINY))]) == 0
    out = capsys.readouterr().out
    assert "'tiny'" in out and "2 nodes" in out and "1 service;" in out
    assert "9 actions" in out  # two slots of 0..2 replicas
    assert "latency model mmc" in out and "synthetic" in out


def names_field(line: str, dotted: str) -> bool:
    """``nodes.0.cpu`` is named either as ``nodes.0.cpu`` or as ``nodes[0].cpu``."""
    return dotted in line or re.sub(r"\.(\d+)", r"[\1]", dotted) in line


def _without_cpu(data: dict) -> dict:
    node = {k: v for k, v in data["nodes"][0].items() if k != "cpu"}
    return {**data, "nodes": [node, data["nodes"][1]]}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_without_cpu(TINY), "nodes.0.cpu"),
        ({**TINY, "nodes": [TINY["nodes"][0], {**TINY["nodes"][1], "ram_mib": -5}]}, "nodes.1.ram_mib"),
        ({**TINY, "services": [{**TINY["services"][0], "allowed_nodes": ["zz"]}]}, "allowed_nodes"),
        ({**TINY, "demand": {"base_users": 100000}}, "demand"),
    ],
    ids=["missing-field", "negative-capacity", "unknown-node", "impossible-demand"],
)
def test_bad_scenario_file_is_one_line(
    data: dict, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_yaml(tmp_path / "bad.yaml", data)
    for argv in (["scenario", "validate", str(path)], ["plot", "demand", "--scenario", str(path)]):
        assert main(argv) == 2
        assert names_field(one_error_line(capsys.readouterr().err), field)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["scenario", "validate", "no-such-city"], "unknown scenario preset"),
        (["scenario", "show", "no-such-city"], "unknown scenario preset"),
        (["scenario", "validate", "missing.yaml"], "missing.yaml"),
        (["plot", "city", "--scenario", "testapp-4bs", "--slot", "99999"], "--slot"),
        (["plot", "city", "--scenario", "testapp-4bs", "--slot", "abc"], "--slot"),
        (["plot", "city", "--scenario", "testapp-4bs", "--hour", "24"], "--hour"),
        (["plot", "city", "--scenario", "testapp-4bs", "--slot", "1", "--hour", "2"], "--hour"),
        (["plot", "city", "--scenario", "testapp-4bs", "--trace", "C"], "unknown profile 'C'"),
        (["plot", "city", "--scenario", "reference-city", "--trace", "x"], "--trace"),
        (["plot", "city", "--scenario", "testapp-4bs", "--placement", "magic"], "--placement"),
        (["frobnicate"], "invalid choice"),
        (["demo", "--train-seconds", "0"], "--train-seconds"),
        (["demo", "--eval-hours", "30"], "--eval-hours"),
        (["demo", "--seeds", "0"], "--seeds"),
    ],
)
def test_bad_input_is_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert needle in one_error_line(capsys.readouterr().err)


def test_unreadable_yaml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["scenario", "validate", str(path)]) == 2
    assert "not valid YAML" in one_error_line(capsys.readouterr().err)
