"""Checks of a training request beyond its schema, so a task that is accepted can be trained.

The preset or algorithm, the scenario, the stop criteria, the hyperparameters and the search space are validated by
building the RLlib config the job will build (:func:`policies.rllib.configs.algorithm_config`, directly or through
the preset): that builds the env once and checks every hyperparameter name and type, without starting Ray; RLlib's
cross-field checks (``AlgorithmConfig.validate``) run on one point of the search space. Results are cached per
request content, so resubmitting the same configuration costs nothing. Every problem is an
:class:`~serve_app.api.errors.InputError` (422) with one line naming the field.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from typing import Any

from serve_app.api.errors import InputError
from serve_app.schemas import TrainingTaskCreate, tune_search_space
from serve_app.settings import Settings

#: inline scenarios must stay in the size range of the built-in cities (a request must not build a huge world)
LIMITS = {"nodes": 200, "services": 600, "users": 20_000, "slots_per_day": 1440, "episode_slots": 10_000}
DEFAULT_ENV_ID = "lwmecps/ReferenceCity-v0"
#: trials one Tune search may run (grid points x num_samples)
MAX_TRIALS = 64
#: exceptions the env and config builders raise on bad input (ScenarioError and PresetError are ValueErrors)
BAD_INPUT = (ValueError, TypeError, KeyError, IndexError, OverflowError)
_FIELD = re.compile(r"^(hparams|scenario|env_config|env_id|demand|stop|search_space|traces)\b[\w.\[\]]*: ")


class _Validated:
    """A bounded LRU of request keys that passed the expensive check."""

    def __init__(self, size: int = 256):
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            return False

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)


_VALIDATED = _Validated()


def _named(message: str) -> str:
    """``message`` if it starts by naming a field (``hparams.lr: ...``), else ``hparams: <message>``."""
    return message if _FIELD.match(message) else f"hparams: {message}"


def _check_inline_scenario(data: dict[str, Any]) -> None:
    from envs.scenario import ScenarioError, parse_scenario

    if "base_dir" in data:
        raise InputError("scenario.base_dir: not allowed in an inline scenario")
    try:
        spec = parse_scenario(data)
    except ScenarioError as err:
        raise InputError(str(err)) from None
    if spec.demand.kind != "synthetic":
        raise InputError("scenario.demand.kind: an inline scenario must use synthetic demand (no server files)")
    sizes = {
        "nodes": len(spec.nodes) if spec.nodes is not None else spec.city.n_nodes,  # type: ignore[union-attr]
        "services": len(spec.services) if spec.services is not None else spec.service_gen.n_services,  # type: ignore[union-attr]
        "users": spec.demand.base_users,
        "slots_per_day": 86400 // spec.demand.slot_seconds,
        "episode_slots": spec.episode_slots,
    }
    for name, value in sizes.items():
        if value > LIMITS[name]:
            raise InputError(f"scenario: {value} {name.replace('_', ' ')} is over the service's limit {LIMITS[name]}")
    from envs.world import build_world

    try:  # what the schema lets through but the city builder refuses (e.g. an empty node list)
        build_world(spec)
    except BAD_INPUT as err:
        raise InputError(f"scenario: cannot build this city: {err}") from None


def _env(body: TrainingTaskCreate) -> tuple[str, dict[str, Any]]:
    """(env_id, env_config) of an ``algorithm`` request."""
    import envs
    from envs.presets import PRESETS

    scenario = body.scenario
    if isinstance(scenario, str):
        if scenario not in PRESETS:
            raise InputError(f"scenario: unknown scenario preset {scenario!r} (known: {', '.join(PRESETS)})")
    elif isinstance(scenario, dict):
        _check_inline_scenario(scenario)
    by_preset = {preset: env_id for env_id, preset in envs.ENV_IDS.items()}
    env_id = body.env_id or (by_preset.get(scenario) if isinstance(scenario, str) else None) or DEFAULT_ENV_ID
    if env_id not in envs.ENV_IDS:
        raise InputError(f"env_id: unknown env id {env_id!r} (known: {', '.join(envs.ENV_IDS)})")
    env_config: dict[str, Any] = {"scenario": scenario}
    if body.traces is not None:
        env_config["traces"] = list(body.traces)
    return env_id, env_config


def _domains(body: TrainingTaskCreate, preset_space: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's search domains; 422 when a name is also fixed, or the search has too many trials."""
    from serve_app.train_search import trial_count

    space = {k: v.model_dump() for k, v in body.search_space.items()}
    overlap = sorted(set(space) & set(body.hparams))
    if overlap:
        raise InputError(f"search_space.{overlap[0]}: also fixed in hparams; give it in one of them")
    domains = tune_search_space(space)
    searched = {k: v for k, v in (preset_space or {}).items() if k not in body.hparams} | domains
    trials = trial_count(searched, body.num_samples)
    if trials > MAX_TRIALS:
        raise InputError(f"search_space: {trials} trials (grid points x num_samples) is over the limit {MAX_TRIALS}")
    return domains


def _one_point(domains: dict[str, Any]) -> dict[str, Any]:
    """One point of a search space (a grid's first value, a sample of any other domain): RLlib's own cross-field
    checks (``AlgorithmConfig.validate``) need concrete values."""
    from ray.tune.search.sample import Domain

    point: dict[str, Any] = {}
    for name, domain in domains.items():
        if isinstance(domain, dict) and set(domain) == {"grid_search"}:
            point[name] = domain["grid_search"][0]
        else:
            point[name] = domain.sample() if isinstance(domain, Domain) else domain
    return point


def _stop(body: TrainingTaskCreate) -> dict[str, float]:
    from tune_configs.preset import check_stop

    try:
        stop = check_stop(body.stop)
    except ValueError as err:
        raise InputError(str(err)) from None
    if body.algorithm is not None and not stop:
        raise InputError("stop: a task without a preset needs at least one stop criterion, e.g. training_iteration")
    return stop


def task_spec(body: TrainingTaskCreate, owner: str, settings: Settings) -> dict[str, Any]:
    """The task document fields (everything but the status bookkeeping) for a validated request.

    Slow on a cache miss (imports RLlib once, builds the env): call it from a worker thread.
    """
    mode = body.wandb.mode or settings.wandb_mode
    if mode == "online" and body.wandb.api_key is None and not os.environ.get("WANDB_API_KEY"):
        raise InputError("wandb.api_key: online mode needs an API key (in the task, or WANDB_API_KEY on the cluster)")
    common: dict[str, Any] = {
        "name": body.name,
        "owner": owner,
        "hparams": dict(body.hparams),
        "stop": None,
        "search_space": {k: v.model_dump() for k, v in body.search_space.items()},
        "num_samples": body.num_samples,
        "seed": body.seed,
        "wandb": {
            "mode": mode,
            "project": body.wandb.project,
            "has_api_key": body.wandb.api_key is not None,
        },
    }
    key = json.dumps(body.model_dump(mode="json", include={"preset", "algorithm", "scenario", "env_id", "traces",
                                                            "hparams", "search_space"}), sort_keys=True)  # fmt: skip
    if body.preset is not None:
        from tune_configs import PRESETS, get_preset

        if body.preset not in PRESETS:
            raise InputError(f"preset: unknown preset {body.preset!r} (known: {', '.join(PRESETS)})")
        preset = get_preset(body.preset)
        common["stop"] = _stop(body)
        space = preset.param_space()
        domains = _domains(body, space)
        if key not in _VALIDATED:
            try:
                preset.config({**body.hparams, **domains})
                preset.config({**_one_point(space), **body.hparams, **_one_point(domains)}).validate()
            except BAD_INPUT as err:
                raise InputError(_named(str(err).removeprefix(f"{preset.name}: "))) from None
            _VALIDATED.add(key)
        return {**common, "preset": preset.name, "algorithm": preset.algo, "env_id": preset.env_id,
                "env_config": dict(preset.env_config)}  # fmt: skip

    from policies.rllib.configs import ALGORITHMS, algorithm_config

    if body.algorithm not in ALGORITHMS:
        raise InputError(f"algorithm: unknown algorithm {body.algorithm!r} (known: {', '.join(ALGORITHMS)})")
    env_id, env_config = _env(body)
    common["stop"] = _stop(body)
    domains = _domains(body)
    if key not in _VALIDATED:
        try:
            algorithm_config(body.algorithm, env_id, env_config, {**body.hparams, **domains})
            algorithm_config(body.algorithm, env_id, env_config, {**body.hparams, **_one_point(domains)}).validate()
        except BAD_INPUT as err:
            raise InputError(_named(str(err))) from None
        _VALIDATED.add(key)
    return {**common, "preset": None, "algorithm": body.algorithm, "env_id": env_id, "env_config": env_config}
