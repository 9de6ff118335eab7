"""A :class:`~serve_app.loops.controller.Controller` from a stored loop: world, latency source, backend, policy.

The kubeconfig content is parsed in memory (``kubernetes.config.new_client_from_config_dict``): it never touches
the disk. The policy is the deployed model's framework-neutral export, loaded in the runner's process (like
``predict_in_ingress``), so a loop keeps deciding while the policy replicas are busy or restarting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from envs.backends.k8s_plan import ClusterConfig
from envs.backends.kubernetes import KubernetesBackend
from envs.backends.testapp_client import TestAppClient, TestAppLatency
from envs.placement_env import resolve_scenario
from envs.world import World, build_world
from serve_app.loops.controller import Controller, Decide, LoopError, greedy_decider
from serve_app.loops.prometheus import PrometheusLatency


def world_of(scenario: str) -> World:
    try:
        return build_world(resolve_scenario(scenario))
    except (ValueError, OSError) as err:
        raise LoopError(f"scenario: cannot build {scenario!r}: {err}") from None


def latency_source(spec: Mapping[str, Any]) -> Any:
    if spec["kind"] == "prometheus":
        return PrometheusLatency(spec["url"], spec["query"], timeout_s=float(spec.get("timeout_s", 10.0)))
    client = TestAppClient(spec["url"], timeout_s=float(spec.get("timeout_s", 10.0)))
    return TestAppLatency(client, spec["group_id"], {k: (v[0], v[1]) for k, v in spec["experiments"].items()})


def check_latency(world: World, spec: Mapping[str, Any]) -> None:
    """The test-app's experiment mapping names services and stations of the world (one clear error otherwise)."""
    for exp_id, (svc, station) in (spec.get("experiments") or {}).items():
        if svc not in world.service_names:
            raise LoopError(f"latency.experiments[{exp_id!r}]: unknown service {svc!r} in this scenario")
        if station not in world.node_names:
            raise LoopError(f"latency.experiments[{exp_id!r}]: unknown station {station!r} in this scenario")


def api_client(kubeconfig: str, context: str | None) -> Any:
    from kubernetes import config

    try:
        cfg = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        raise LoopError("kubeconfig: not YAML or JSON") from None
    if not isinstance(cfg, dict):
        raise LoopError("kubeconfig: expected a kubeconfig mapping")
    try:
        return config.new_client_from_config_dict(cfg, context=context)
    except Exception as err:  # the client raises ConfigException, KeyError, TypeError on bad files
        raise LoopError(f"kubeconfig: unusable ({type(err).__name__}: {str(err)[:200]})") from None


def cluster_config(loop: Mapping[str, Any]) -> ClusterConfig:
    return ClusterConfig(
        namespace=loop["namespace"],
        image=loop.get("image") or "",
        dry_run=bool(loop["dry_run"]),
        max_changes_per_step=loop.get("max_changes_per_step"),
        rollout_timeout_s=float(loop["rollout_timeout_s"]),
        poll_interval_s=float(loop["poll_interval_s"]),
        slot_seconds=float(loop["period_s"]),  # each period is measured over its own window
        node_map=dict(loop.get("node_map") or {}),
    )


def build_controller(loop: Mapping[str, Any], kubeconfig: str, decide: Decide, pace: Any) -> Controller:
    """The controller of a stored loop (``pace(seconds)`` waits out a period; the runner's is interruptible)."""
    world = world_of(loop["scenario"])
    check_latency(world, loop["latency"])
    backend = KubernetesBackend(
        world, latency_source(loop["latency"]), cluster_config(loop),
        api_client=api_client(kubeconfig, loop.get("context")), pace=pace,
    )  # fmt: skip
    return Controller(world, backend, decide, start_slot=loop.get("start_slot"))


def exported_decider(storage_root: str, model_id: str) -> Decide:
    from serve_app.deployments.policy import ModelNotFound, load_policy

    try:
        return greedy_decider(load_policy(storage_root, model_id))
    except ModelNotFound as err:
        raise LoopError(str(err)) from None
