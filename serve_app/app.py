"""The Serve application builder: ``serve run serve_app.app:build_app``, ``serve deploy`` and KubeRay's RayService.

A config file (``serve build`` style)::

    applications:
      - name: lwmecps
        route_prefix: /
        import_path: serve_app.app:build_app
        args: {predict_in_ingress: true, settings: {storage_root: s3://bucket/lwmecps}}

Service settings come from the ``LWMECPS_*`` environment of the Ray cluster; ``args.settings`` overrides them (never
put secrets there: Serve configs are visible in the dashboard). The graph: ``Ingress`` (FastAPI) -> ``PolicyServer``
(multiplexed exported policies), plus ``LoopRunner`` (closed loops; the ingress holds its handle).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

APP_NAME = "lwmecps"
#: Settings fields that must not travel in Serve args (they would be visible in the Serve config)
SECRET_FIELDS = frozenset({"jwt_secret", "admin_password", "fernet_key"})


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (the ``args`` of a Serve config)."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(default_factory=dict)
    """Overrides of :class:`serve_app.settings.Settings` fields (non-secret ones)."""
    predict_in_ingress: bool = False
    """Serve predictions from the ingress replica itself (one hop fewer) instead of the PolicyServer replicas."""
    ingress_replicas: int = Field(default=1, ge=1)
    policy_replicas: int = Field(default=1, ge=1)
    replica_num_cpus: float = Field(default=0.0, ge=0)
    """CPUs each replica reserves (0: replicas never block training jobs from being scheduled)."""
    max_replicas_per_node: int | None = Field(default=None, ge=1)
    """At most this many ingress / policy replicas per Ray node (Serve's option; 1 spreads them over the nodes)."""
    dashboard_address: str | None = None
    """Ray job server address (``http://127.0.0.1:8265``); None: the cluster this replica runs on."""
    job_num_cpus: float = Field(default=0.0, ge=0)
    """CPUs a training job's driver reserves (its algorithm then trains inside the driver)."""
    reconcile: bool = True
    loops: bool = True
    """Run the closed-loop runner (``LoopRunner`` deployment, see docs/closed-loop.md)."""

    @field_validator("settings")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        from serve_app.settings import Settings

        for name in value:
            if name in SECRET_FIELDS:
                raise ValueError(f"settings.{name}: secrets come from the environment, not from Serve args")
            if name not in Settings.model_fields:
                raise ValueError(f"settings.{name}: unknown setting")
        return value


def build_app(args: dict[str, Any]) -> Any:
    """The Serve application (``Ingress`` bound to a ``PolicyServer`` handle)."""
    from serve_app.deployments.ingress import Ingress
    from serve_app.deployments.policy import PolicyServer
    from serve_app.settings import Settings

    opts = AppArgs.model_validate(args)
    settings = Settings(**opts.settings)
    actor = {"num_cpus": opts.replica_num_cpus}
    spread = {} if opts.max_replicas_per_node is None else {"max_replicas_per_node": opts.max_replicas_per_node}
    policy = PolicyServer.options(  # type: ignore[attr-defined]
        num_replicas=opts.policy_replicas, ray_actor_options=actor, **spread
    ).bind(settings.storage_root)
    ingress = Ingress.options(  # type: ignore[attr-defined]
        num_replicas=opts.ingress_replicas, ray_actor_options=actor, **spread
    )
    loops = None
    if opts.loops:
        from serve_app.deployments.loop import LoopRunner

        loops = LoopRunner.options(ray_actor_options=actor).bind(opts.settings)  # type: ignore[attr-defined]
    return ingress.bind(policy, opts.model_dump(), loops)
