"""The Helm chart in kuberay/chart: lints, renders offline, puts its values where they belong, includes
kuberay/rbac.yaml, and refuses bad values with a message naming the value."""

from __future__ import annotations

from typing import Any

import pytest
import yaml


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def service_containers(checks, objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return checks.containers([(f"{o['kind']}/{o['metadata']['name']}", o) for o in objects])


def test_chart_lints_without_findings(checks):
    import helm_python

    for name, values in checks.VALUE_SETS.items():
        report = helm_python.lint(checks.CHART, values, strict=True, kube_version=f"v{checks.KUBE_VERSION}")
        findings = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
        assert not report["errors"] and not findings, (name, report)


def test_lint_reports_a_broken_template(checks, tmp_path):
    import shutil

    import helm_python

    chart = tmp_path / "chart"
    shutil.copytree(checks.CHART, chart)
    (chart / "templates" / "storage.yaml").write_text("{{ if .Values.storage }}\nkind: [\n")
    report = helm_python.lint(chart, checks.VALUE_SETS["defaults"], strict=True)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def test_defaults_render_the_service_mongodb_storage_and_rbac_only(rendered_sets, checks):
    objects = rendered_sets["defaults"]
    rbac = checks.documents((checks.KUBERAY / "rbac.yaml").read_text())
    expected = {"RayService", "StatefulSet", "Service", "Secret", "PersistentVolumeClaim"} | {o["kind"] for o in rbac}
    assert {o["kind"] for o in objects} == expected


def test_the_chart_includes_kuberay_rbac_yaml_as_is(rendered_sets, checks):
    rbac = checks.documents((checks.KUBERAY / "rbac.yaml").read_text())
    assert rbac
    for name, objects in rendered_sets.items():
        for obj in rbac:
            assert obj in objects, f"{name}: {obj['kind']}/{obj['metadata']['name']} missing"


def test_service_pods_run_as_the_service_account_rbac_grants(rendered_sets, checks):
    rbac = checks.documents((checks.KUBERAY / "rbac.yaml").read_text())
    accounts = {o["metadata"]["name"] for o in rbac if o["kind"] == "ServiceAccount"}
    bound = {s["name"] for o in rbac if o["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in o["subjects"]}
    (service,) = by_kind(rendered_sets["defaults"], "RayService")
    for _where, tmpl in checks.ray_pod_templates(service):
        assert tmpl["spec"]["serviceAccountName"] in accounts
        assert not bound or tmpl["spec"]["serviceAccountName"] in bound


def test_values_reach_image_replicas_storage_and_mongodb(rendered_sets, checks):
    objects = rendered_sets["existing-claims-and-secret"]
    (service,) = by_kind(objects, "RayService")
    spec = checks.ray_cluster_spec(service)
    (workers,) = spec["workerGroupSpecs"]
    assert (workers["minReplicas"], workers["replicas"], workers["maxReplicas"]) == (2, 2, 8)
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve["applications"][0]["args"]["policy_replicas"] == 3
    assert serve["applications"][0]["args"]["predict_in_ingress"] is True
    assert not by_kind(objects, "PersistentVolumeClaim") and not by_kind(objects, "Secret")
    for where, pod, c in service_containers(checks, objects):
        assert c["image"] == "registry.example.org/lwmecps-gym:abc123", where
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims == ["shared-rwx"], where
        assert env_of(c)["MONGODB_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-mongo", where
    (sts,) = by_kind(objects, "StatefulSet")
    password = env_of(sts["spec"]["template"]["spec"]["containers"][0])["MONGO_INITDB_ROOT_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "my-mongo"


def test_external_mongodb_cloud_storage_and_no_auth(rendered_sets, checks):
    objects = rendered_sets["external-mongodb-cloud-storage-no-auth"]
    assert not by_kind(objects, "StatefulSet") and not by_kind(objects, "PersistentVolumeClaim")
    kinds = {o["kind"] for o in objects}
    assert {"RayService", "RayCluster", "RayJob"} <= kinds
    for where, pod, c in service_containers(checks, objects):
        env = env_of(c)
        assert env["LWMECPS_STORAGE_ROOT"]["value"] == "s3://lwmecps-models/prod", where
        assert env["WANDB_MODE"]["value"] == env["LWMECPS_WANDB_MODE"]["value"] == "online", where
        assert not any("persistentVolumeClaim" in v for v in pod["volumes"]), where
        if "RayJob" not in where:
            ref = env["LWMECPS_MONGODB_URI"]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == ("lwmecps-secrets", "LWMECPS_MONGODB_URI")
    for obj in objects:
        if obj["kind"] in checks.RAY_CRDS:
            assert checks.ray_cluster_spec(obj)["authOptions"] == {"mode": "disabled"}
    (job,) = by_kind(objects, "RayJob")
    assert job["spec"]["entrypoint"] == (
        "python -m tune_configs.refcity_appo --storage s3://lwmecps-models/prod/runs --wandb online"
        " --env-runners 1 --stop-iters 20"
    )
    assert job["spec"]["shutdownAfterJobFinishes"] is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "mongodb.rootPassword"),
        ({"workers": {"minReplicas": 5, "maxReplicas": 2}}, "workers: minReplicas 5 is greater than maxReplicas 2"),
        ({"storage": {"root": "/data/models"}}, 'storage.root: "/data/models" is neither a cloud URI nor under'),
        ({"wandb": {"mode": "sometimes"}}, "at '/wandb/mode': value must be one of"),
        ({"ray": {"auth": {"mode": "tokens"}}}, "at '/ray/auth/mode'"),
        ({"jobs": {"enabled": True, "presets": ["Test_PPO"]}}, "at '/jobs/presets/0'"),
        ({"mongodb": {"rootPassword": "p@ss/word"}}, "at '/mongodb/rootPassword'"),
    ],
)
def test_bad_values_fail_with_the_value_named(render, values, message):
    import helm_python

    if values and "mongodb" not in values:
        values = {**values, "mongodb": {"rootPassword": "0123abcd"}}
    with pytest.raises(helm_python.HelmError) as err:
        render.render_chart(values)
    assert message in str(err.value)


def test_a_namespace_other_than_rbac_yaml_s_is_refused(render, checks):
    import helm_python

    with pytest.raises(helm_python.HelmError) as err:
        render.render_chart(checks.VALUE_SETS["defaults"], namespace="elsewhere")
    assert 'kuberay/rbac.yaml puts ServiceAccount/lwmecps-gym in namespace "lwmecps"' in str(err.value)
