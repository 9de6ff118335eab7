"""Pure Kubernetes helpers of the cluster backend (no ``kubernetes`` import): quantities, names, manifests, errors.

Everything here works on plain dicts, so the manifests the backend sends are exactly what the tests validate.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

#: ``app.kubernetes.io/managed-by`` value of every object the backend creates
MANAGER = "lwmecps-gym"
SERVICE_LABEL = "lwmecps.io/service"
NODE_LABEL = "lwmecps.io/node"
MANAGED_BY = "app.kubernetes.io/managed-by"
HOSTNAME_LABEL = "kubernetes.io/hostname"
MIB = 2.0**20

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)}
_DECIMAL |= {"k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12")}
_DECIMAL |= {"P": Decimal("1e15"), "E": Decimal("1e18")}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")


class ClusterError(RuntimeError):
    """A cluster operation failed. The message is one line naming the operation and the object."""


class ForbiddenError(ClusterError):
    """403: the service account lacks a permission (see ``kuberay/rbac.yaml``)."""


class NotFoundError(ClusterError):
    """404: a namespace, node or Deployment does not exist."""


class ConflictError(ClusterError):
    """409: the object changed or was created concurrently, and the one retry with a fresh read failed too."""


class ServerError(ClusterError):
    """5xx (or any other unexpected status) from the API server."""


class UnreachableError(ClusterError):
    """The API server (or the test-app client) could not be reached at all."""


def api_error(what: str, status: int | None, reason: str | None, body: str | None) -> ClusterError:
    """The one-line error for an API answer ``status`` (0 or None: no answer) to the operation ``what``."""
    if not status:
        return UnreachableError(f"kubernetes: {what}: API server unreachable ({reason})")
    try:
        message = json.loads(body or "{}").get("message") or reason
    except (ValueError, AttributeError):
        message = reason
    cls = {403: ForbiddenError, 404: NotFoundError, 409: ConflictError}.get(status, ServerError)
    hint = "; grant the verbs in kuberay/rbac.yaml" if status == 403 else ""
    return cls(f"kubernetes: {what}: HTTP {status} {reason}: {message}{hint}".replace("\n", " "))


def metrics_summary(nodes: dict[str, Any], pods: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Node and pod usage (cores, MiB) from ``metrics.k8s.io`` NodeMetricsList / PodMetricsList bodies."""

    def usage(items: list[dict[str, Any]]) -> dict[str, float]:
        us = [i.get("usage", {}) for i in items]
        return {
            "cpu": sum(parse_quantity(u.get("cpu", "0")) for u in us),
            "memory_mib": sum(parse_quantity(u.get("memory", "0")) for u in us) / MIB,
        }

    return {
        "nodes": {i["metadata"]["name"]: usage([i]) for i in nodes.get("items", [])},
        "pods": {i["metadata"]["name"]: usage(i.get("containers", [])) for i in pods.get("items", [])},
    }


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a float in base units (cores or bytes).

    ``"1500m"`` -> 1.5, ``"2"`` -> 2.0, ``"16Gi"`` -> 17179869184.0, ``"123456Ki"``, ``"500M"`` -> 5e8,
    ``"1e3"`` -> 1000.0. Raises ``ValueError`` naming the bad value.
    """
    if isinstance(value, bool):
        raise ValueError(f"quantity: expected a string or number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(f"quantity: cannot parse {value!r} (expected e.g. '1500m', '2', '16Gi', '500M', '1e3')")
    number, exponent, suffix = m.groups()
    try:
        x = Decimal(number)
        if exponent:
            return float(x * Decimal(10) ** int(exponent[1:]))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"quantity: cannot parse {value!r}") from None
    suffix = suffix or ""
    return float(x * _BINARY[suffix]) if suffix in _BINARY else float(x * _DECIMAL[suffix])


def cpu_quantity(cores: float) -> str:
    return f"{round(cores * 1000)}m"


def memory_quantity(mib: float) -> str:
    return f"{round(mib)}Mi"


def _dns_label(text: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return out or "x"


def deployment_name(service: str, node: str) -> str:
    """``<service>-<node>`` as a DNS-1123 label, at most 47 characters (room for the pod-name suffixes).

    Long or non-label names are shortened with a stable hash so two slots never share a name.
    """
    name = f"{_dns_label(service)}-{_dns_label(node)}"
    if len(name) <= 47 and name == f"{service}-{node}":
        return name
    digest = hashlib.sha1(f"{service}\0{node}".encode()).hexdigest()[:8]
    return f"{name[:38].rstrip('-')}-{digest}"


def label_value(text: str) -> str:
    """A valid label value (<= 63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both ends)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", out) or "x"


def slot_labels(service: str, node: str) -> dict[str, str]:
    """The labels of a slot's Deployment and its pods (the last two also form its selector)."""
    return {
        "app": label_value(service),
        MANAGED_BY: MANAGER,
        SERVICE_LABEL: label_value(service),
        NODE_LABEL: label_value(node),
    }


def deployment_manifest(
    *,
    namespace: str,
    service: str,
    node: str,
    image: str,
    cpu: float,
    ram_mib: float,
    replicas: int,
    port: int = 8000,
    readiness_path: str | None = None,
) -> dict[str, Any]:
    """The Deployment of one (service, node) slot: pinned to ``node`` by required node affinity on
    ``kubernetes.io/hostname``; requests = limits = the service's CPU and memory (Guaranteed QoS, which is
    what the capacity check counts)."""
    labels = slot_labels(service, node)
    resources = {"cpu": cpu_quantity(cpu), "memory": memory_quantity(ram_mib)}
    container: dict[str, Any] = {
        "name": "app",
        "image": image,
        "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    if readiness_path:
        container["readinessProbe"] = {"httpGet": {"path": readiness_path, "port": port}, "periodSeconds": 2}
    match = {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(service, node), "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": int(replicas),
            "selector": {"matchLabels": {SERVICE_LABEL: labels[SERVICE_LABEL], NODE_LABEL: labels[NODE_LABEL]}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": [match]}]
                            }
                        }
                    },
                },
            },
        },
    }
