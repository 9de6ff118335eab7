"""Request and response bodies of the REST API: ``XCreate`` / ``XUpdate`` (inputs, ``extra="forbid"``) and
``XPublic`` (outputs; unknown stored fields are ignored, secrets are never part of them).

Deeper checks that need the env or RLlib (hyperparameters, scenarios) live in :mod:`serve_app.api.validation`;
this module only checks shapes, so importing it costs neither Ray nor torch.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    SecretStr,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

Role = Literal["viewer", "operator", "admin"]
TaskStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
WandbMode = Literal["online", "offline", "disabled"]
Username = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
Key = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_./-]{0,63}$")]
Number = Annotated[float, Field(allow_inf_nan=False)]
#: a Mongo ObjectId as text; path parameters use the same pattern (malformed -> 422, unknown -> 404)
OBJECT_ID = r"^[0-9a-f]{24}$"


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- auth and users ------------------------------------------------------------------------------------------
class TokenPublic(Output):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserCreate(Input):
    username: Username
    password: SecretStr = Field(min_length=8, max_length=128)
    role: Role = "viewer"


class UserUpdate(Input):
    role: Role | None = None
    password: SecretStr | None = Field(default=None, min_length=8, max_length=128)

    @model_validator(mode="after")
    def _something(self) -> UserUpdate:
        if self.role is None and self.password is None:
            raise ValueError("give at least one of role, password")
        return self


class UserPublic(Output):
    id: str
    username: str
    role: Role
    created_at: datetime | None = None


class UserPage(Output):
    items: list[UserPublic]
    total: int
    skip: int
    limit: int


# -- training ------------------------------------------------------------------------------------------------
class _Range(Input):
    lower: Number
    upper: Number

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not self.lower < self.upper:
            raise ValueError(f"need lower < upper, got [{self.lower}, {self.upper}]")
        return self


class Uniform(_Range):
    type: Literal["uniform"]


class LogUniform(_Range):
    type: Literal["loguniform"]

    @model_validator(mode="after")
    def _positive(self) -> LogUniform:
        if self.lower <= 0:
            raise ValueError(f"loguniform needs lower > 0, got {self.lower}")
        return self


class RandInt(Input):
    type: Literal["randint"]
    lower: int
    upper: int

    @model_validator(mode="after")
    def _ordered(self) -> RandInt:
        if not self.lower < self.upper:
            raise ValueError(f"need lower < upper, got [{self.lower}, {self.upper}]")
        return self


class Choice(Input):
    type: Literal["choice", "grid_search"]
    values: list[JsonValue] = Field(min_length=1, max_length=64)


SearchDomain = Annotated[Uniform | LogUniform | RandInt | Choice, Field(discriminator="type")]
_DOMAIN_ADAPTER: TypeAdapter[Any] = TypeAdapter(SearchDomain)


def tune_search_space(space: dict[str, Any]) -> dict[str, Any]:
    """The stored ``search_space`` (name -> domain spec as JSON) as Ray Tune domains (imports Ray Tune)."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, raw in space.items():
        spec = _DOMAIN_ADAPTER.validate_python(raw)
        if isinstance(spec, Choice):
            out[name] = tune.grid_search(spec.values) if spec.type == "grid_search" else tune.choice(spec.values)
        elif isinstance(spec, RandInt):
            out[name] = tune.randint(spec.lower, spec.upper)
        elif isinstance(spec, LogUniform):
            out[name] = tune.loguniform(spec.lower, spec.upper)
        else:
            out[name] = tune.uniform(spec.lower, spec.upper)
    return out


class WandbOptions(Input):
    mode: WandbMode | None = Field(default=None, description="default: the service's wandb_mode")
    project: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    api_key: SecretStr | None = Field(
        default=None, min_length=1, max_length=256, description="write-only; stored encrypted, never returned"
    )


class TrainingTaskCreate(Input):
    """Either a Tune ``preset`` (its env, algorithm, hyperparameters and stop criteria; ``hparams``/``stop`` override)
    or an ``algorithm`` with a ``scenario`` (a preset name or an inline scenario)."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    preset: str | None = Field(default=None, max_length=64, description="a tune_configs preset name")
    algorithm: str | None = Field(default=None, max_length=16, description="PPO, APPO, DQN or SAC")
    scenario: str | dict[str, JsonValue] | None = Field(
        default=None, description="a scenario preset name (envs.presets) or an inline scenario (synthetic demand)"
    )
    env_id: str | None = Field(default=None, max_length=64, description="registered env id (default: by scenario)")
    traces: list[int | str] | None = Field(default=None, min_length=1, max_length=64)
    hparams: dict[Key, JsonValue] = Field(default_factory=dict, max_length=64)
    stop: dict[Key, Number] = Field(default_factory=dict, max_length=8)
    search_space: dict[Key, SearchDomain] = Field(default_factory=dict, max_length=16)
    num_samples: int = Field(default=1, ge=1, le=16)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    wandb: WandbOptions = Field(default_factory=WandbOptions)

    @model_validator(mode="after")
    def _one_source(self) -> TrainingTaskCreate:
        if (self.preset is None) == (self.algorithm is None):
            raise ValueError("preset: give exactly one of 'preset' or 'algorithm'")
        if self.preset is not None:
            fixed = [f for f in ("scenario", "env_id", "traces") if getattr(self, f) is not None]
            if fixed:
                raise ValueError(f"{fixed[0]}: a preset fixes its env; use 'algorithm' with '{fixed[0]}' instead")
        elif self.scenario is None:
            raise ValueError("scenario: 'algorithm' needs a scenario (a preset name or an inline scenario)")
        return self


class TaskWandbPublic(Output):
    mode: WandbMode | None = None
    project: str | None = None
    has_api_key: bool = False


class TaskAccepted(Output):
    id: str
    status: TaskStatus


class TaskPublic(Output):
    id: str
    name: str
    owner: str | None = None
    status: TaskStatus
    preset: str | None = None
    algorithm: str | None = None
    env_id: str | None = None
    env_config: dict[str, Any] = Field(default_factory=dict)
    hparams: dict[str, Any] = Field(default_factory=dict)
    stop: dict[str, float] = Field(default_factory=dict)
    search_space: dict[str, Any] = Field(default_factory=dict)
    num_samples: int = 1
    seed: int = 0
    wandb: TaskWandbPublic = Field(default_factory=TaskWandbPublic)
    progress: float = 0.0
    iteration: int = 0
    latest_metrics: dict[str, Any] = Field(default_factory=dict)
    ray_job_id: str | None = None
    wandb_run: Any = None
    model_id: str | None = None
    trials: list[dict[str, Any]] = Field(default_factory=list, description="a search's trials: config, final metrics")
    best_trial: str | None = None
    error: str | None = None
    cancel_requested: bool = False
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None


class TaskPage(Output):
    items: list[TaskPublic]
    total: int
    skip: int
    limit: int


class TaskLogs(Output):
    id: str
    ray_job_id: str | None
    logs: str


# -- models and deployments ----------------------------------------------------------------------------------
class ModelPublic(Output):
    id: str
    name: str | None = None
    type: str | None = None
    algorithm: str | None = None
    status: str | None = None
    task_id: str | None = None
    preset: str | None = None
    owner: str | None = None
    env_id: str | None = None
    env_config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    artifact_uri: str | None = None
    checkpoint_uri: str | None = None
    export_uri: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ModelPage(Output):
    items: list[ModelPublic]
    total: int
    skip: int
    limit: int


class EvaluateCreate(Input):
    scenario: str | None = Field(default=None, max_length=64, description="scenario preset; default: the model's")
    seeds: int = Field(default=1, ge=1, le=5)
    steps: int = Field(default=24, ge=1, le=288)
    baselines: list[Literal["static-1", "greedy-latency", "random"]] = Field(default_factory=list, max_length=3)


class DeploymentPublic(Output):
    id: str
    model_id: str
    previous_model_id: str | None = None
    status: str | None = None
    owner: str | None = None
    requests: int = 0
    errors: int = 0
    created_at: datetime | None = None


class DeploymentUpdate(Input):
    """Swap the model a deployment serves (same env spaces); the new model is warmed before the switch."""

    model_id: str = Field(pattern=OBJECT_ID, description="the model to serve from now on (24 hex digits)")


class DeploymentAccepted(Output):
    deployment_id: str
    model_id: str
    status: str


class DeploymentPage(Output):
    items: list[DeploymentPublic]
    total: int
    skip: int
    limit: int


class ObservationIn(Input):
    """The env's observation as the policy sees it."""

    observations: list[float] = Field(min_length=1, max_length=100_000)
    action_mask: list[float] = Field(min_length=1, max_length=100_000)

    @field_validator("observations", "action_mask")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        for i, x in enumerate(v):
            if not math.isfinite(x):
                raise ValueError(f"[{i}] is not a finite number ({x})")
        return v


class SnapshotIn(Input):
    """A cluster/demand snapshot; the API builds the observation with the model env's dynamics."""

    slot: int = Field(ge=0, description="slot of the day")
    users: list[Number] = Field(min_length=1, max_length=100_000, description="users per cell for the coming slot")
    placement: list[int] = Field(min_length=1, max_length=100_000, description="current replicas per slot")
    service_latency_ms: list[Number] | None = Field(default=None, max_length=100_000)


def _predict_kind(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "snapshot" if isinstance(value, SnapshotIn) else "observation"
    return "snapshot" if isinstance(value, dict) and {"slot", "users", "placement"} & set(value) else "observation"


#: a predict input: a snapshot when it has any of slot/users/placement, else an observation (precise errors)
PredictIn = Annotated[
    Annotated[ObservationIn, Tag("observation")] | Annotated[SnapshotIn, Tag("snapshot")],
    Discriminator(_predict_kind),
]


class PredictPublic(Output):
    deployment_id: str
    model_id: str
    placement: list[int]


class PredictBatchCreate(Input):
    items: list[PredictIn] = Field(min_length=1, max_length=256)


class PredictBatchPublic(Output):
    deployment_id: str
    model_id: str
    placements: list[list[int]]


# -- metrics -------------------------------------------------------------------------------------------------
class HealthPublic(Output):
    status: Literal["ok", "degraded"]
    database: str
    runtime: dict[str, Any]


class MetricsSummary(Output):
    tasks_by_status: dict[str, int]
    models_by_status: dict[str, int]
    deployments: int
    training: dict[str, Any]
    predict: dict[str, Any]


class MetricPoint(Output):
    timestamp: datetime
    values: dict[str, Any]


class TaskSeries(Output):
    task_id: str
    points: list[MetricPoint]
