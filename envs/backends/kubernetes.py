"""The Kubernetes backend: one Deployment per (service, node) slot, scaled by patching ``spec.replicas`` only.

This is the only module that imports the ``kubernetes`` client, and only when a backend is built (``pip install
kubernetes``, part of the ``dev`` extra), so ``import envs`` never loads it. Safety rules: dry-run by default
(plans are recorded in :attr:`KubernetesBackend.events`, nothing is written); at most ``max_changes_per_step``
replicas change per step (the rest is deferred to later steps); a placement over the allocatable CPU/memory the
cluster reports is refused; a rollout that does not become ready within ``rollout_timeout_s`` is rolled back to
the last good placement. API failures raise the one-line errors of :mod:`envs.backends.k8s_resources`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from envs.backends.base import Backend, Outcome, Snapshot
from envs.backends.k8s_plan import ClusterConfig, LatencySource, bounded_step, node_usage, over_capacity
from envs.backends.k8s_resources import (
    MANAGED_BY,
    MANAGER,
    MIB,
    ClusterError,
    ConflictError,
    NotFoundError,
    UnreachableError,
    api_error,
    deployment_manifest,
    deployment_name,
    metrics_summary,
    parse_quantity,
)
from envs.world import World


def _kubernetes() -> tuple[Any, type[Exception]]:
    """The ``kubernetes`` package and the transport error of its HTTP layer (imported on first use)."""
    try:
        import kubernetes
        import urllib3
    except ImportError:  # pragma: no cover - dev extra installed in the test environment
        raise ImportError("KubernetesBackend needs the kubernetes client: pip install 'kubernetes>=30'") from None
    return kubernetes, urllib3.exceptions.HTTPError


class KubernetesBackend(Backend):
    def __init__(
        self,
        world: World,
        latency: LatencySource,
        config: ClusterConfig | None = None,
        *,
        api_client: Any = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        pace: Callable[[float], None] = time.sleep,
    ):
        k8s, self._transport_error = _kubernetes()
        self.world, self.latency, self.cfg, self.pace = world, latency, config or ClusterConfig(), pace
        self.api = api_client or k8s.config.new_client_from_config(config_file=kubeconfig, context=context)
        self.core, self.apps = k8s.client.CoreV1Api(self.api), k8s.client.AppsV1Api(self.api)
        self.custom = k8s.client.CustomObjectsApi(self.api)
        self._api_error = k8s.client.exceptions.ApiException
        self.nodes = [self.cfg.node_map.get(n, n) for n in world.node_names]
        self.names = [deployment_name(world.service_names[s], self.nodes[n]) for s, n in self._slots()]
        self.slot_of = {name: k for k, name in enumerate(self.names)}
        self.events: list[dict[str, Any]] = []
        self.trace = world.demand.trace(world.demand.default_key)
        self.t = 0
        K = world.n_slots
        self.current = self.good = np.zeros(K, dtype=np.int64)
        self.existing: set[str] = set()
        self.cpu_cap, self.ram_cap = world.node_cpu.copy(), world.node_ram.copy()
        self._pending: np.ndarray | None = None
        self._stable = True

    def _slots(self) -> list[tuple[int, int]]:
        return list(zip(self.world.slot_service.tolist(), self.world.slot_node.tolist(), strict=True))

    # -- API calls with clear errors ------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.cfg.request_timeout_s)
        try:
            return fn(*args, **kwargs)
        except self._api_error as err:
            raise api_error(what, err.status, err.reason, err.body) from None
        except (OSError, self._transport_error) as err:
            raise UnreachableError(f"kubernetes: {what}: API server unreachable ({type(err).__name__})") from None

    # -- discovery ---------------------------------------------------------------------------------------
    def discover(self) -> None:
        """Allocatable CPU and memory of every station's node, minus what pods we do not manage request."""
        found = {n.metadata.name: n for n in self._call("list nodes", self.core.list_node).items}
        ns = self.cfg.namespace
        for i, name in enumerate(self.nodes):
            if name not in found:
                raise NotFoundError(f"kubernetes: node {name!r} (station {self.world.node_names[i]}) not found")
            alloc = found[name].status.allocatable or {}
            cpu, ram = parse_quantity(alloc.get("cpu", "0")), parse_quantity(alloc.get("memory", "0")) / MIB
            pods = self._call(
                f"list pods on node {name}", self.core.list_pod_for_all_namespaces,
                label_selector=f"{MANAGED_BY}!={MANAGER}",
                field_selector=f"spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed",
            ).items  # fmt: skip
            for pod in pods:
                for c in pod.spec.containers:
                    req = (c.resources.requests if c.resources else None) or {}
                    cpu -= parse_quantity(req.get("cpu", "0"))
                    ram -= parse_quantity(req.get("memory", "0")) / MIB
            self.cpu_cap[i], self.ram_cap[i] = cpu, ram
        deps = self._call(
            f"list deployments in namespace {ns}", self.apps.list_namespaced_deployment, ns,
            label_selector=f"{MANAGED_BY}={MANAGER}",
        ).items  # fmt: skip
        self.existing = {d.metadata.name for d in deps if d.metadata.name in self.slot_of}
        self.current = np.zeros(self.world.n_slots, dtype=np.int64)
        for d in deps:
            if d.metadata.name in self.slot_of:
                self.current[self.slot_of[d.metadata.name]] = d.spec.replicas or 0
        self.good = self.current.copy()

    # -- the Backend protocol -------------------------------------------------------------------------------
    def reset(self, trace: int | str, start_slot: int, placement: np.ndarray) -> Snapshot:
        self.trace, self.t = self.world.demand.trace(trace), start_slot
        self.discover()
        self.apply(placement)
        self.wait_until_stable()
        self.latency.start(self.world)
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        day = len(self.trace)
        return Snapshot(slot=self.t % day, users=self.trace[self.t % day], placement=self.current.copy())

    def apply(self, placement: np.ndarray) -> None:
        target = np.asarray(placement, dtype=np.int64)
        event: dict[str, Any] = {"step": self.t, "from": self.current.tolist(), "target": target.tolist()}
        self.events.append(event)
        self._pending, self._stable = None, True
        problems = over_capacity(self.world, target, self.cpu_cap, self.ram_cap)
        if problems:
            event.update(status="refused", reason="over capacity: " + "; ".join(problems))
            self._stable = False
            return
        step = bounded_step(self.world, self.current, target, self.cfg.max_changes_per_step, self.cpu_cap, self.ram_cap)
        event.update(to=step.tolist(), deferred=int(np.abs(target - step).sum()))
        if self.cfg.dry_run:
            event["status"] = "dry-run"
            self._stable = bool((step == self.current).all())
            return
        self._write(step)
        event["status"] = "applied"
        self._pending = step

    def _write(self, step: np.ndarray) -> None:
        w, ns = self.world, self.cfg.namespace
        for k in np.flatnonzero(step != self.current):
            name, n = self.names[k], int(w.slot_node[k])
            if name not in self.existing:
                if not self.cfg.image:
                    raise ClusterError(f"image: ClusterConfig.image is required to create Deployment {name}")
                s = int(w.slot_service[k])
                body = deployment_manifest(
                    namespace=ns, service=w.service_names[s], node=self.nodes[n], image=self.cfg.image,
                    cpu=float(w.svc_cpu[s]), ram_mib=float(w.svc_ram[s]), replicas=int(step[k]),
                    port=self.cfg.port, readiness_path=self.cfg.readiness_path,
                )  # fmt: skip
                try:
                    self._call(f"create deployment {name}", self.apps.create_namespaced_deployment, ns, body)
                    self.existing.add(name)
                    continue
                except ConflictError:  # created meanwhile: fall through to a replicas patch
                    self.existing.add(name)
            self._scale(name, int(step[k]))

    def _scale(self, name: str, replicas: int) -> None:
        """Patch only ``spec.replicas``; on 409 re-read the Deployment and retry once."""
        patch = {"spec": {"replicas": replicas}}
        what = f"scale deployment {name} to {replicas}"
        try:
            self._call(what, self.apps.patch_namespaced_deployment, name, self.cfg.namespace, patch)
        except ConflictError:
            fresh = self._call(
                f"read deployment {name}", self.apps.read_namespaced_deployment, name, self.cfg.namespace
            )
            if (fresh.spec.replicas or 0) != replicas:
                self._call(what, self.apps.patch_namespaced_deployment, name, self.cfg.namespace, patch)

    def _ready(self, names: list[str]) -> bool | None:
        """True when every Deployment runs its replicas, False when one gave up (progress deadline), else None."""
        ns = self.cfg.namespace
        for name in names:
            d = self._call(f"read deployment {name}", self.apps.read_namespaced_deployment, name, ns)
            st, want = d.status, d.spec.replicas or 0
            if st is None or (st.observed_generation or 0) < (d.metadata.generation or 0):
                return None
            if any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" for c in st.conditions or []):
                return False
            if (st.ready_replicas or 0) != want or (st.replicas or 0) != want:
                return None
        return True

    def _await(self, names: list[str]) -> bool:
        deadline = time.monotonic() + self.cfg.rollout_timeout_s
        while True:
            ready = self._ready(names)
            if ready is not None or time.monotonic() >= deadline:
                return bool(ready)
            time.sleep(self.cfg.poll_interval_s)

    def wait_until_stable(self) -> bool:
        step, self._pending = self._pending, None
        if step is None:
            return self._stable
        changed = [self.names[k] for k in np.flatnonzero(step != self.current)]
        self.current = step
        if self._await(changed):
            self.good = step.copy()
            return True
        event = self.events[-1]
        event.update(status="rolled back", reason=f"rollout not ready within {self.cfg.rollout_timeout_s:g} s")
        self._write(self.good)
        self.current = self.good.copy()
        if not self._await(changed):
            event["reason"] += "; the rollback did not become ready either"
            raise ClusterError(f"kubernetes: rollback of {', '.join(changed)} did not become ready")
        return False

    def serve_slot(self) -> Outcome:
        window = self.cfg.slot_seconds or float(self.world.scenario.demand.slot_seconds)
        self.pace(window)
        out = self.latency.measure(self.world, window)
        self.t += 1
        return out

    # -- usage ------------------------------------------------------------------------------------------
    def cluster_metrics(self) -> dict[str, Any]:
        """Node usage and our pods' usage from ``metrics.k8s.io`` (cores and MiB), with the placement's requests."""
        nodes = self._call(
            "read node metrics", self.custom.list_cluster_custom_object, "metrics.k8s.io", "v1beta1", "nodes"
        )
        pods = self._call(
            "read pod metrics", self.custom.list_namespaced_custom_object, "metrics.k8s.io", "v1beta1",
            self.cfg.namespace, "pods", label_selector=f"{MANAGED_BY}={MANAGER}",
        )  # fmt: skip

        cpu, ram = node_usage(self.world, self.current)
        requested = {n: {"cpu": float(cpu[i]), "memory_mib": float(ram[i])} for i, n in enumerate(self.nodes)}
        return {**metrics_summary(nodes, pods), "requested": requested}

    def close(self) -> None:
        self.api.close()


__all__ = ["ClusterConfig", "KubernetesBackend", "LatencySource"]
