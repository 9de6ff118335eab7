"""Every manifest the backend generates, and kuberay/rbac.yaml, validate against the Kubernetes 1.33 schemas
(strict: unknown fields fail); the RBAC rules are minimal and cover exactly the calls the backend makes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from envs.backends.k8s_resources import deployment_manifest, deployment_name, label_value
from envs.backends.kubernetes import ClusterConfig, KubernetesBackend
from envs.backends.testapp_client import TestAppClient, TestAppLatency
from envs.presets import get_scenario
from envs.world import build_world

kv = pytest.importorskip("kubernetes_validate")
RBAC = Path(__file__).resolve().parents[2] / "kuberay" / "rbac.yaml"
VERSION = "1.33.0"

IMAGE = "registry.local/lwmecps/testapp-server:1"


def validate(obj: dict) -> None:
    kv.validate(obj, VERSION, strict=True)


def test_the_validator_is_strict():
    bad = deployment_manifest(namespace="ns", service="s", node="n", image="i", cpu=0.5, ram_mib=256, replicas=1)
    bad["spec"]["replica"] = 2
    with pytest.raises(kv.ValidationError):
        validate(bad)


@pytest.mark.parametrize(
    ("service", "node", "readiness"),
    [("testapp", "bs1", None), ("svc1", "worker-07.edge.example.com", "/api/latency"), ("a" * 60, "b" * 60, None)],
)
def test_generated_deployments_validate(service, node, readiness):
    dep = deployment_manifest(
        namespace="lwmecps", service=service, node=node, image="registry.local/app:1", cpu=0.25, ram_mib=512,
        replicas=3, readiness_path=readiness,
    )  # fmt: skip
    validate(dep)
    name = dep["metadata"]["name"]
    assert len(name) <= 47 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name)
    assert all(len(v) <= 63 for v in dep["metadata"]["labels"].values())
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_slot_names_are_unique_in_a_city():
    world = build_world(get_scenario("reference-city"))
    names = {deployment_name(world.service_names[s], world.node_names[n]) for s, n in zip(world.slot_service,
             world.slot_node, strict=True)}  # fmt: skip
    assert len(names) == world.n_slots
    assert deployment_name("a" * 60, "x") != deployment_name("a" * 60, "y")
    assert label_value("-node.1-") == "node.1"


def test_bodies_the_backend_sends_validate(cluster_factory, testapp):
    world = build_world(get_scenario("testapp-4bs"))
    cluster, kubeconfig = cluster_factory({n: ("2", "4Gi") for n in world.node_names})
    latency = TestAppLatency(TestAppClient(testapp.url), "g1", {"e": ("testapp", "bs1")})
    cfg = ClusterConfig(
        image=IMAGE, dry_run=False, max_changes_per_step=None, poll_interval_s=0.01, readiness_path="/api/latency"
    )
    backend = KubernetesBackend(world, latency, cfg, kubeconfig=kubeconfig, pace=lambda s: None)
    backend.reset("A", 0, np.array([1, 2, 3, 4]))
    posted = [r.body for r in cluster.writes() if r.method == "POST"]
    assert len(posted) == 4
    for body in posted:
        validate(body)


def rbac_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


def test_rbac_validates_and_is_minimal():
    docs = rbac_docs()
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    for d in docs:
        validate(d)
    rules = [(d["kind"], r) for d in docs if d["kind"] in ("Role", "ClusterRole") for r in d["rules"]]
    for _, r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]
        assert not {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"} & set(r["verbs"])
    cluster_wide = {res for kind, r in rules if kind == "ClusterRole" for res in r["resources"]}
    assert "deployments" not in cluster_wide  # Deployments only in the target namespace


def allowed(docs: list[dict], verb: str, group: str, resource: str, namespaced: bool) -> bool:
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    return any(
        verb in r["verbs"] and group in r["apiGroups"] and resource in r["resources"]
        for d in docs
        if d["kind"] in kinds
        for r in d["rules"]
    )


def test_rbac_covers_every_call_the_backend_makes(cluster_factory, testapp):
    world = build_world(get_scenario("testapp-4bs"))
    cluster, kubeconfig = cluster_factory({n: ("2", "4Gi") for n in world.node_names})
    latency = TestAppLatency(TestAppClient(testapp.url), "g1", {"e": ("testapp", "bs1")})
    cfg = ClusterConfig(image=IMAGE, dry_run=False, max_changes_per_step=None, poll_interval_s=0.01)
    backend = KubernetesBackend(world, latency, cfg, kubeconfig=kubeconfig, pace=lambda s: None)
    backend.reset("A", 0, np.array([1, 1, 1, 1]))
    cluster.fail("PATCH", "testapp-bs1", 409)  # the conflict path re-reads with GET
    backend.apply(np.array([2, 1, 1, 0]))
    backend.wait_until_stable()
    backend.cluster_metrics()
    docs = rbac_docs()
    seen = set()
    for r in cluster.requests:
        m = re.fullmatch(r"/apis?/(?:([^/]+)/)?v1(?:beta1)?(/namespaces/[^/]+)?/([a-z]+)(/[^/]+)?", r.path)
        assert m, r.path
        group, namespaced, resource, name = m.group(1) or "", bool(m.group(2)), m.group(3), m.group(4)
        verb = {"GET": "get" if name else "list", "POST": "create", "PATCH": "patch"}[r.method]
        seen.add((verb, group, resource))
        assert allowed(docs, verb, group, resource, namespaced), (verb, group, resource, namespaced)
    assert {("patch", "apps", "deployments"), ("create", "apps", "deployments"), ("list", "", "nodes")} <= seen
