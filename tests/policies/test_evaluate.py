"""Evaluation harness (rollouts, intervals, held-out traces, bad input) and reports (tables, PNG plots)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.presets import get_scenario
from envs.world import World, build_world
from policies.evaluate import METRICS, confidence_interval, evaluate, held_out_traces
from policies.heuristics import StaticK, UniformRandom
from policies.report import markdown_table, plot_latency_over_day, plot_learning_curves, read_curve, terminal_table

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def city() -> World:
    return build_world(get_scenario("reference-city"))


@pytest.fixture(scope="module")
def result(city):
    return evaluate({"static-1": StaticK(1), "random": UniformRandom()}, city, seeds=5, steps=4, start_slot="random")


def test_rollouts_are_paired_and_complete(result):
    assert result.policies == ["static-1", "random"] and len(result.rollouts) == 10
    for seed in result.seeds:
        pair = [r for r in result.rollouts if r.seed == seed]
        assert len({(r.trace, r.start_slot) for r in pair}) == 1
        assert pair[0].trace == 1000 + seed  # held out from training traces 0..15
    for r in result.rollouts:
        assert set(r.metrics) == set(METRICS)
        assert r.latency_ms.shape == r.reward.shape == r.slots.shape == (4,)
        assert r.metrics["reward"] == pytest.approx(r.reward.sum())
        assert r.metrics["latency_p95"] >= r.metrics["latency_mean"] - 1e-9 or r.metrics["latency_p95"] >= np.median(
            r.latency_ms
        )
        assert r.metrics["mask_violations"] == 0
    assert all(r.metrics["rejected"] == 0 for r in result.of("static-1"))


def test_intervals_contain_the_mean(result):
    for metrics in result.summary().values():
        for iv in metrics.values():
            assert iv.n == 5 and iv.lo <= iv.mean <= iv.hi and iv.half_width >= 0


def test_interval_is_a_t_interval():
    iv = confidence_interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.half_width == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(confidence_interval([4.0]).half_width)


def test_intervals_shrink_with_more_seeds(city):
    few = evaluate({"random": UniformRandom()}, city, seeds=3, steps=2).summary()["random"]
    many = evaluate({"random": UniformRandom()}, city, seeds=12, steps=2).summary()["random"]
    for metric in ("reward", "latency_mean", "replicas"):
        assert many[metric].half_width < few[metric].half_width


def test_profiles_hold_out_the_training_profile():
    twin = build_world(get_scenario("testapp-4bs"))
    assert held_out_traces(twin, [0, 1]) == ["B", "B"]
    res = evaluate({"static-2": StaticK(2)}, "lwmecps/TestApp4BS-v0", seeds=2, steps=3, start_slot=100)
    assert [r.trace for r in res.rollouts] == ["B", "B"]
    assert res.rollouts[0].slots.tolist() == [100, 101, 102]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env": "lwmecps/Nope-v0"}, "unknown env id"),
        ({"seeds": 0}, "seeds: need at least 1"),
        ({"seeds": []}, "seeds: need at least 1"),
        ({"steps": 0}, "steps"),
        ({"start_slot": -1}, "start_slot"),
        ({"traces": ["C"]}, "unknown profile"),
        ({"policies": {}}, "policies"),
    ],
)
def test_bad_input_fails_with_a_clear_message(kwargs, match):
    args = {"policies": {"static-1": StaticK(1)}, "env": "lwmecps/TestApp4BS-v0", "seeds": 1, "steps": 1}
    with pytest.raises(ValueError, match=match):
        evaluate(**{**args, **kwargs})


def test_tables(result):
    md = markdown_table(result)
    lines = md.strip().splitlines()
    assert lines[2].startswith("| policy |") and len(lines) == 2 + 2 + 2
    mean = result.summary()["static-1"]["replicas"].mean
    assert f"{mean:.1f}" in md and "±" in md
    term = terminal_table(result)
    assert "static-1" in term and "random" in term and "|" not in term
    with pytest.raises(ValueError, match="unknown metric"):
        markdown_table(result, columns=("nope",))


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 1000


def test_latency_plot_is_a_png(result, tmp_path):
    assert_png(plot_latency_over_day(result, tmp_path / "day.png"))


def test_learning_curves_from_progress_csv_and_pairs(tmp_path):
    csv_path = tmp_path / "progress.csv"
    csv_path.write_text(
        "training_iteration,num_env_steps_sampled_lifetime,env_runners/episode_return_mean\n"
        "1,4000,-900.5\n2,8000,\n3,12000,-700.25\n"
    )
    xs, ys = read_curve(csv_path)
    np.testing.assert_array_equal(xs, [4000, 12000])
    np.testing.assert_array_equal(ys, [-900.5, -700.25])
    out = plot_learning_curves({"ppo": csv_path, "dqn": ([0, 1, 2], [-3.0, -2.0, -1.0])}, tmp_path / "lc.png")
    assert_png(out)
    with pytest.raises(ValueError, match="y column"):
        read_curve({"training_iteration": [1, 2]})
    with pytest.raises(ValueError, match="learning curve"):
        read_curve(tmp_path / "missing.csv")
