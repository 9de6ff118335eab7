"""Helpers of the KubeRay tests (loaded by conftest.py as the ``checks`` fixture): the plain manifests, the chart's
value sets, and a validator that checks an object as a Kubernetes API server would (Ray kinds against the KubeRay v1
CRD schemas in ``crds/``, copied verbatim from KubeRay v1.7.0; core kinds with ``kubernetes-validate --strict``)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "kuberay"
CHART = KUBERAY / "chart"
CRDS = Path(__file__).resolve().parent / "crds"
KUBE_VERSION = "1.33.0"
RAY_CRDS = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
#: keys of the user-made secret the chart refers to (docs/deploy-kuberay.md creates it)
SECRET_KEYS = {"LWMECPS_JWT_SECRET", "LWMECPS_FERNET_KEY", "LWMECPS_ADMIN_PASSWORD", "LWMECPS_MONGODB_URI"}
SECRET_KEYS_OPTIONAL = {"WANDB_API_KEY"}

#: value sets the chart is rendered with (besides the plain manifests' own set)
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {"mongodb": {"rootPassword": "0123abcd"}},
    "external-mongodb-cloud-storage-no-auth": {
        "mongodb": {"bundled": False},
        "storage": {"root": "s3://lwmecps-models/prod"},
        "ray": {"auth": {"mode": "disabled"}},
        "wandb": {"mode": "online"},
        "jobs": {"enabled": True, "presets": ["refcity-appo"], "extraArgs": ["--stop-iters", "20"]},
        "rayCluster": {"enabled": True},
    },
    "existing-claims-and-secret": {
        "mongodb": {"existingSecret": "my-mongo"},
        "storage": {"pvc": {"existingClaim": "shared-rwx"}},
        "service": {"policyReplicas": 3, "predictInIngress": True, "replicaNumCpus": 0.5},
        "workers": {"minReplicas": 2, "replicas": 2, "maxReplicas": 8},
        "image": {"repository": "registry.example.org/lwmecps-gym", "tag": "abc123"},
    },
}


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def plain_files() -> list[Path]:
    return sorted(p for p in KUBERAY.glob("*.yaml") if p.name != "plain-values.yaml")


# -- validation as the API server does it ----------------------------------------------------------------------------


def drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value if v is not None]
    return value


def apply_defaults(value: Any, schema: dict[str, Any]) -> None:
    """Fill schema defaults in place (structural-schema defaulting)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    apply_defaults(item, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Fields the schema does not know (the API server would prune them; `kubectl --validate=strict` refuses)."""
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                yield from unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{i}]")


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The v1 openAPIV3Schema of a KubeRay CRD."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 1-1.4 MB: the C parser is ~7x faster
    crd = yaml.load((CRDS / RAY_CRDS[kind]).read_text(), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return dict(version["schema"]["openAPIV3Schema"])


@functools.cache
def crd_validator(kind: str) -> Any:
    import jsonschema

    return jsonschema.Draft4Validator(crd_schema(kind))


CLUSTER_SPEC_FIELD = {"RayCluster": None, "RayService": "rayClusterConfig", "RayJob": "rayClusterSpec"}


def ray_cluster_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec of a RayCluster, RayService or RayJob ({} when there is none)."""
    field = CLUSTER_SPEC_FIELD[obj["kind"]]
    spec = obj.get("spec", {})
    return dict(spec if field is None else spec.get(field) or {})


def ray_pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every Ray node group of a RayCluster, RayService or RayJob."""
    spec = ray_cluster_spec(obj)
    if "headGroupSpec" in spec:
        yield "head", spec["headGroupSpec"]["template"]
    for group in spec.get("workerGroupSpecs", []):
        yield f"worker group {group['groupName']}", group["template"]


def _k8s_errors(obj: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        cause = getattr(err, "caused_by", None)
        where = "/".join(str(p) for p in getattr(cause, "absolute_path", []))
        message = getattr(cause, "message", str(err).splitlines()[0])
        return [f"{where}: {message}"]
    return []


def validation_errors(obj: dict[str, Any]) -> list[str]:
    """Why an API server (with strict field validation) would refuse ``obj``; [] when it would accept it."""
    if obj.get("kind") not in RAY_CRDS:
        return _k8s_errors(obj)
    schema = crd_schema(obj["kind"])
    value = drop_nulls(copy.deepcopy(obj))
    apply_defaults(value, schema)
    found = crd_validator(obj["kind"]).iter_errors(value)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]
    errors += [f"{path}: unknown field" for path in unknown_fields(value, schema)]
    for where, template in ray_pod_templates(value):  # the pod templates as core objects, strictly
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        errors += [f"{where} pod template {e}" for e in _k8s_errors(wrapped)]
    return errors


def ray_objects(objects: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(where, obj) for where, obj in objects if obj["kind"] in RAY_CRDS]


def containers(objects: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod spec, container) of every Ray container of ``objects``."""
    return [
        (f"{where} {group}", tmpl["spec"], c)
        for where, obj in ray_objects(objects)
        for group, tmpl in ray_pod_templates(obj)
        for c in tmpl["spec"]["containers"]
    ]
