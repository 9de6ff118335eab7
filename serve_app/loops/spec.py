"""What a closed loop is attached with: :class:`LoopCreate` (the ``POST /api/v1/loops`` body) and its parts.

Only shapes are checked here (pydantic); the scenario, the deployed model and the cluster are checked when the
loop is created (:mod:`serve_app.loops.build`). The kubeconfig is a secret: it is stored Fernet-encrypted and no
output model has a field for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, Field(min_length=1, max_length=253)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestAppSource(_Input):
    """Latency from the upstream test-app client API (``GET /api/group_stats``)."""

    __test__ = False  # not a pytest test class

    kind: Literal["testapp"] = "testapp"
    url: str = Field(pattern=r"^https?://", max_length=500)
    group_id: str = Field(min_length=1, max_length=200)
    experiments: dict[Name, tuple[Name, Name]] = Field(min_length=1, max_length=10_000)
    """experiment id -> (service name, station name) whose users that experiment plays"""
    timeout_s: float = Field(default=10.0, gt=0, le=300)


class PrometheusSource(_Input):
    """Latency from Prometheus: ``query`` is a PromQL expression giving each service's mean latency in ms, one
    series per service labelled ``service=<name>`` (e.g. ``sum by (service) (rate(x_sum[1m])) /
    sum by (service) (rate(x_count[1m])) * 1000``)."""

    kind: Literal["prometheus"]
    url: str = Field(pattern=r"^https?://", max_length=500)
    query: str = Field(min_length=1, max_length=4000)
    timeout_s: float = Field(default=10.0, gt=0, le=300)


LatencySpec = Annotated[TestAppSource | PrometheusSource, Field(discriminator="kind")]


class LoopCreate(_Input):
    """Attach a deployed policy to a cluster."""

    deployment_id: str = Field(pattern=r"^[0-9a-f]{24}$")
    kubeconfig: SecretStr = Field(min_length=1, max_length=200_000)
    """the kubeconfig file's content (YAML or JSON); stored encrypted, never returned"""
    context: str | None = Field(default=None, max_length=253)
    namespace: str = Field(default="lwmecps", pattern=DNS_LABEL)
    scenario: str | None = Field(default=None, max_length=200)
    """preset describing the services and nodes (default: the deployed model's own scenario)"""
    node_map: dict[Name, Name] = Field(default_factory=dict)
    """station name -> Kubernetes node name (stations missing here use their own name)"""
    image: str = Field(default="", max_length=500)
    """container image of Deployments the backend has to create (empty: adopt existing Deployments only)"""
    latency: LatencySpec
    period_s: float = Field(default=60.0, ge=0.05, le=86_400)
    dry_run: bool = True
    max_changes_per_step: int | None = Field(default=4, ge=1, le=10_000)
    rollout_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    start_slot: int | None = Field(default=None, ge=0)
    """slot of the demand day to start at (default: the current UTC time of day)"""
    max_steps: int | None = Field(default=None, ge=1)
    """stop by itself after this many decisions (default: run until stopped)"""

    @model_validator(mode="after")
    def _poll_below_timeout(self) -> LoopCreate:
        if self.poll_interval_s > self.rollout_timeout_s:
            raise ValueError("poll_interval_s: must not exceed rollout_timeout_s")
        return self


class LoopPublic(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    deployment_id: str
    model_id: str
    status: Literal["running", "stopping", "stopped", "failed", "completed"]
    namespace: str
    scenario: str
    latency: dict
    period_s: float
    dry_run: bool
    max_changes_per_step: int | None
    max_steps: int | None = None
    owner: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    steps: int = 0
    last_decision: dict | None = None
    error: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None


class LoopPage(BaseModel):
    items: list[LoopPublic]
    total: int
    skip: int
    limit: int


class DecisionPage(BaseModel):
    items: list[dict]
    total: int
    skip: int
    limit: int


class ClusterMetricsPublic(BaseModel):
    """The latest node and pod usage (``metrics.k8s.io``) each running loop saved, by loop id."""

    clusters: dict[str, dict]
