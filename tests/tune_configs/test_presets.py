"""Every preset builds its RLlib config, its search space resolves, names and inputs are validated."""

import importlib
import re

import pytest
from ray.tune.search.sample import Domain
from ray.tune.search.variant_generator import generate_variants

from tune_configs import PRESETS, PresetError, get_preset
from tune_configs.cli import parse_sets
from tune_configs.preset import STOP_KEYS, check_stop
from tune_configs.run import run_name


def _concrete(value):
    return not isinstance(value, Domain) and not (isinstance(value, dict) and "grid_search" in value)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_builds_and_its_space_resolves(name):
    module = importlib.import_module(PRESETS[name])
    preset = get_preset(name)
    assert preset is module.PRESET and preset.name == name
    config = module.config()
    assert config.algo_class.__name__ == preset.algo
    assert set(module.stop()) <= set(STOP_KEYS) and module.stop()
    variants = [spec for _, spec in generate_variants(module.param_space())] if module.param_space() else [{}]
    assert all(_concrete(v) for spec in variants for v in spec.values())
    # every resolved point is a valid set of hyperparameters for this preset
    for spec in variants:
        assert preset.config(spec).to_dict()["lr"] == spec.get("lr", config.lr)


def test_search_preset_is_a_full_grid():
    variants = list(generate_variants(get_preset("testapp-ppo-search").param_space()))
    assert len({(spec["lr"], spec["entropy_coeff"]) for _, spec in variants}) == 6


def test_unknown_preset_lists_the_known_names():
    with pytest.raises(PresetError, match="unknown preset 'nope'") as e:
        get_preset("nope")
    assert all(name in str(e.value) for name in PRESETS)


@pytest.mark.parametrize(
    ("overrides", "match"), [({"no_such_param": 1}, "no_such_param"), ({"lr": "fast"}, "lr: expected float")]
)
def test_bad_override_names_the_field(overrides, match):
    with pytest.raises(PresetError, match=match):
        get_preset("testapp-ppo").config(overrides)


def test_override_reaches_the_config():
    config = get_preset("testapp-ppo").config({"lr": 1e-3, "num_epochs": 2}, seed=5)
    assert (config.lr, config.num_epochs, config.seed) == (1e-3, 2, 5)


@pytest.mark.parametrize(
    ("stop", "match"),
    [
        ({"iters": 1}, "stop.iters: unknown"),
        ({"training_iteration": True}, "expected a number"),
        ({"time_total_s": 0}, "> 0"),
    ],
)
def test_bad_stop_criterion(stop, match):
    with pytest.raises(PresetError, match=match):
        check_stop(stop)


def test_run_names_are_deterministic():
    name = run_name("testapp-ppo", 1, {"lr": 1e-3, "gamma": 0.9}, {"training_iteration": 5})
    assert re.fullmatch(r"testapp-ppo__s1__[0-9a-f]{6}", name)
    assert name == run_name("testapp-ppo", 1, {"gamma": 0.9, "lr": 1e-3}, {"training_iteration": 5})
    others = {
        run_name("testapp-ppo", 2, {"lr": 1e-3, "gamma": 0.9}, {"training_iteration": 5}),
        run_name("testapp-ppo", 1, {"lr": 3e-4, "gamma": 0.9}, {"training_iteration": 5}),
        run_name("testapp-ppo", 1, {"lr": 1e-3, "gamma": 0.9}, {"training_iteration": 6}),
        run_name("testapp-ppo", 1),
    }
    assert name not in others and len(others) == 4


def test_parse_sets():
    assert parse_sets(["lr=3e-4", "fcnet_hiddens=[64, 64]", "use_gae=true", "x=True", "s=abc"]) == {
        "lr": 3e-4,
        "fcnet_hiddens": [64, 64],
        "use_gae": True,
        "x": True,
        "s": "abc",
    }
    for bad in ("lr", "=1"):
        with pytest.raises(PresetError, match="expected key=value"):
            parse_sets([bad])
