"""Typed, validated scenario model: what a MEC city is, loadable from YAML or JSON.

A :class:`Scenario` is a *specification*; :func:`envs.world.build_world` turns it (and its ``seed``)
into concrete numpy arrays. Every random choice (station positions, user mobility, demand noise)
derives from ``Scenario.seed`` and the trace seed, so a scenario file plus a seed fully determines a run.

Errors are raised as :class:`ScenarioError` with one line naming the offending field, e.g.
``scenario.services[3].allowed_nodes: unknown node 'bs9' (known: bs1, bs2, bs3, bs4)``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Upstream hourly demand factors for 00:00..23:00 (adeptvin1/lwmecps-testapp load generator).
UPSTREAM_HOURLY_FACTORS: tuple[float, ...] = (
    0.89, 0.72, 0.56, 0.47, 0.32, 0.28, 0.22, 0.28, 0.35, 0.48, 0.59, 0.63,
    0.73, 0.72, 0.74, 0.75, 0.78, 0.81, 0.85, 0.92, 0.96, 1.0, 0.98, 0.95,
)  # fmt: skip

Pos = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
Choices = Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]


class ScenarioError(ValueError):
    """A scenario is invalid. The message is one line naming the field."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSpec(_Spec):
    """A base station with an edge compute node."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    x_km: float
    y_km: float
    cpu: Annotated[float, Field(gt=0, description="CPU cores")]
    ram_mib: Annotated[float, Field(gt=0)]


class CitySpec(_Spec):
    """Generated stations: a hard-core (Matérn II style) point process in a square area."""

    n_nodes: PosInt
    area_km: Annotated[float, Field(gt=0)]
    min_distance_km: Pos
    cpu_choices: Choices = [4.0, 8.0, 16.0]
    ram_choices_mib: Choices = [8192.0, 16384.0, 32768.0]


class ServiceSpec(_Spec):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    cpu: Annotated[float, Field(gt=0, description="CPU cores per replica")]
    ram_mib: Annotated[float, Field(gt=0, description="RAM per replica")]
    rate: Annotated[float, Field(gt=0, description="service rate per replica, requests/s")]
    max_replicas: Annotated[int, Field(ge=1, le=16)]
    allowed_nodes: Annotated[list[str], Field(min_length=1)] | None = None
    popularity: Annotated[float, Field(gt=0)] = 1.0


class ServicesSpec(_Spec):
    """Generated services: Zipf popularity, each allowed on the ``nodes_per_service`` nodes nearest a random home."""

    n_services: PosInt
    cpu_choices: Choices = [0.25, 0.5, 1.0]
    ram_choices_mib: Choices = [256.0, 512.0, 1024.0]
    rate_range: tuple[float, float] = (20.0, 60.0)
    max_replicas: Annotated[int, Field(ge=1, le=16)] = 3
    nodes_per_service: PosInt = 5
    zipf_s: Pos = 0.8

    @field_validator("rate_range")
    @classmethod
    def _rates(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _range(v, positive=True)


class MobilitySpec(_Spec):
    """Random-waypoint mobility with diurnal hotspots (work by day, home by night)."""

    speed_kmh: tuple[float, float] = (3.0, 30.0)
    hotspots: PosInt = 4
    hotspot_sigma_km: Annotated[float, Field(gt=0)] = 0.8
    work_share_by_day: Annotated[float, Field(ge=0, le=1)] = 0.7

    @field_validator("speed_kmh")
    @classmethod
    def _speeds(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _range(v, positive=False)


class DemandSpec(_Spec):
    """Users per cell per slot.

    ``kind: synthetic``: ``base_users`` moving users, each active in a slot with probability
    ``hourly_factors[hour] * (1 + U(-noise, noise))``; a user belongs to its nearest station.
    ``kind: profile``: exact per-slot user counts per station from CSV files (``profiles`` maps a
    profile name to a file; relative paths resolve against the scenario file's folder).
    """

    kind: Literal["synthetic", "profile"] = "synthetic"
    slot_seconds: PosInt = 300
    request_rate: Annotated[float, Field(gt=0, description="requests/s per active user")] = 1.0
    base_users: PosInt = 500
    hourly_factors: list[Annotated[float, Field(ge=0)]] = list(UPSTREAM_HOURLY_FACTORS)
    noise: Annotated[float, Field(ge=0, lt=1)] = 0.1
    mobility: MobilitySpec = MobilitySpec()
    profiles: dict[str, str] = {}
    default_profile: str | None = None


class LatencySpec(_Spec):
    """Network and processing latency.

    Network: ``local_ms`` inside a cell, else ``per_hop_ms + propagation_ms_per_km * distance``,
    unless ``network_latency_ms`` gives the full cell x node matrix.
    Processing: ``mmc`` (M/M/c queue per deployment, replicas = servers) or ``throttling`` (the
    upstream test-app server's load-unit throttling, stateful across slots).
    """

    model: Literal["mmc", "throttling"] = "mmc"
    timeout_ms: Annotated[float, Field(gt=0)] = 400.0
    local_ms: Pos = 1.0
    per_hop_ms: Pos = 2.0
    propagation_ms_per_km: Pos = 0.05
    network_latency_ms: list[list[Annotated[float, Field(ge=0)]]] | None = None
    rho_max: Annotated[float, Field(gt=0, lt=1)] = 0.95
    max_attempts: Annotated[int, Field(ge=1, le=16)] = 3


class RewardSpec(_Spec):
    """Reward weights: ``-(latency_ms + replica_cost * replicas + change_cost * |changes|
    + sla_penalty * violation% + infeasible_penalty * rejected slots)``."""

    replica_cost: Pos = 0.1
    change_cost: Pos = 0.0
    sla_penalty: Pos = 0.0
    infeasible_penalty: Pos = 1.0


class Scenario(_Spec):
    name: str
    seed: Annotated[int, Field(ge=0)] = 0
    nodes: Annotated[list[NodeSpec], Field(min_length=1)] | None = None
    city: CitySpec | None = None
    services: Annotated[list[ServiceSpec], Field(min_length=1)] | None = None
    service_gen: ServicesSpec | None = None
    demand: DemandSpec = DemandSpec()
    latency: LatencySpec = LatencySpec()
    reward: RewardSpec = RewardSpec()
    episode_slots: PosInt = 48
    base_dir: str | None = Field(default=None, description="folder relative profile paths resolve against")

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if (self.nodes is None) == (self.city is None):
            raise ValueError("nodes: give exactly one of 'nodes' (explicit) or 'city' (generated)")
        if (self.services is None) == (self.service_gen is None):
            raise ValueError("services: give exactly one of 'services' (explicit) or 'service_gen' (generated)")
        for i, s in enumerate(self.services or []):
            _unique(s.allowed_nodes or [], f"services[{i}].allowed_nodes", suffix="")
        if self.nodes is not None:
            _unique([n.name for n in self.nodes], "nodes")
            known = {n.name for n in self.nodes}
            for i, s in enumerate(self.services or []):
                for node in s.allowed_nodes or []:
                    if node not in known:
                        raise ValueError(
                            f"services[{i}].allowed_nodes: unknown node {node!r} (known: {', '.join(sorted(known))})"
                        )
        if self.services is not None:
            _unique([s.name for s in self.services], "services")
        if len(self.demand.hourly_factors) != 24:
            raise ValueError(f"demand.hourly_factors: need 24 values, got {len(self.demand.hourly_factors)}")
        if 86400 % self.demand.slot_seconds:
            raise ValueError(f"demand.slot_seconds: must divide 86400, got {self.demand.slot_seconds}")
        if self.demand.kind == "profile":
            if not self.demand.profiles:
                raise ValueError("demand.profiles: a 'profile' demand needs at least one profile file")
            if self.demand.default_profile not in self.demand.profiles:
                raise ValueError(
                    f"demand.default_profile: unknown profile {self.demand.default_profile!r} "
                    f"(known: {', '.join(sorted(self.demand.profiles))})"
                )
        matrix = self.latency.network_latency_ms
        if matrix is not None:
            n = len(self.nodes) if self.nodes is not None else self.city.n_nodes  # type: ignore[union-attr]
            if len(matrix) != n or any(len(row) != n for row in matrix):
                raise ValueError(f"latency.network_latency_ms: need a {n}x{n} matrix (cells x nodes)")
        return self


def _range(v: tuple[float, float], positive: bool) -> tuple[float, float]:
    lo, hi = v
    if lo < 0 or (positive and lo == 0) or hi < lo:
        bound = "0 < low <= high" if positive else "0 <= low <= high"
        raise ValueError(f"need {bound}, got [{lo}, {hi}]")
    return v


def _unique(names: list[str], field: str, suffix: str = ".name") -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{field}[{i}]{suffix}: duplicate name {name!r}")
        seen.add(name)


_FIELD_PREFIX = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")


def _format(err: ValidationError) -> str:
    """The first error as one line ``scenario.<field path>: <problem>`` (list indices as ``[i]``)."""
    first = err.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    msg = " ".join(first["msg"].removeprefix("Value error, ").split())
    if not loc and _FIELD_PREFIX.match(msg):  # a model-level check that names its field itself
        return f"scenario.{msg}"
    return f"scenario{loc}: {msg}"


def parse_scenario(data: dict[str, Any], base_dir: str | Path | None = None) -> Scenario:
    """Validate a plain dict into a :class:`Scenario`, raising :class:`ScenarioError` on the first problem."""
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario: expected a mapping, got {type(data).__name__}")
    if base_dir is not None and "base_dir" not in data:
        data = {**data, "base_dir": str(base_dir)}
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_format(err)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario from a ``.yaml``/``.yml``/``.json`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"scenario file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario file {path}: not UTF-8 text") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise ScenarioError(f"scenario file {path}: not valid {path.suffix[1:].upper() or 'YAML'}: {detail}") from None
    return parse_scenario(data, base_dir=path.parent.resolve())
