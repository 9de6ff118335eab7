"""A fake Kubernetes API server for the tests: stdlib ``http.server`` on 127.0.0.1, driven by the real client.

Implements ``/version``; nodes; pods (all namespaces or one, label and field selectors); Deployments
get/list/create/patch (strategic-merge / merge patch as a recursive merge, JSON patch for replace/add/remove);
``metrics.k8s.io`` node and pod metrics. A toy scheduler gives a Deployment one pod per replica on the node its
required affinity names; a pod turns Ready ``ready_delay_s`` after creation, or never (``ready_delay_s=None`` or
its node in ``never_ready_nodes``); scale-down deletes the newest pods. Errors are ``Status`` objects;
``fail(method, path_part, status, times)`` injects 403/404/409/5xx. Every request is logged in ``requests``.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

REASONS = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 415: "UnsupportedMediaType", 422: "Invalid"}
REASONS |= {500: "InternalError", 503: "ServiceUnavailable"}
NOW = "2025-01-01T00:00:00Z"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass
class Fault:
    method: str
    path_part: str
    status: int
    times: int


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def status_object(code: int, message: str) -> dict[str, Any]:
    reason = REASONS.get(code, "InternalError")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


# -- selectors --------------------------------------------------------------------------------------------
def _terms(selector: str) -> list[str]:
    return [t.strip() for t in re.split(r",(?![^(]*\))", selector) if t.strip()]


def match_labels(labels: dict[str, str], selector: str) -> bool:
    for term in _terms(selector):
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in") or (op == "in" and key not in labels):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)", term):
            key, op, value = m.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_fields(obj: dict[str, Any], selector: str) -> bool:
    for term in _terms(selector):
        m = re.fullmatch(r"([\w.]+)\s*(!=|==|=)\s*(.*)", term)
        if not m:
            raise ApiError(400, f"invalid field selector {term!r}")
        path, op, value = m.groups()
        cur: Any = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if ((cur or "") == value) != (op != "!="):
            return False
    return True


def merge(base: Any, patch: Any) -> Any:
    """Merge patch semantics (maps merge recursively, ``null`` deletes, anything else replaces)."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(base.get(k), v)
    return out


def json_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        cur = out
        for p in parents:
            cur = cur[int(p)] if isinstance(cur, list) else cur.setdefault(p, {})
        if op["op"] in ("replace", "add"):
            cur[last] = op["value"]
        elif op["op"] == "remove":
            cur.pop(last, None)
        else:
            raise ApiError(422, f"unsupported json patch op {op['op']!r}")
    return out


# -- the cluster state ------------------------------------------------------------------------------------
@dataclass
class FakeCluster:
    nodes: dict[str, tuple[str, str]]  # name -> (allocatable cpu, allocatable memory)
    ready_delay_s: float | None = 0.0
    never_ready_nodes: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(1)

    def fail(self, method: str, path_part: str, status: int, times: int = 1) -> None:
        self.faults.append(Fault(method, path_part, status, times))

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    def add_pod(self, namespace: str, name: str, node: str, labels: dict[str, str], cpu: str, memory: str) -> None:
        """A pod not created by a Deployment (e.g. another team's workload that uses node capacity)."""
        res = {"requests": {"cpu": cpu, "memory": memory}}
        spec = {"nodeName": node, "containers": [{"name": "c", "image": "other", "resources": res}]}
        self.pods[(namespace, name)] = self._pod(namespace, name, labels, spec, ready_at=0.0)

    def replicas_ready(self) -> dict[str, int]:
        """Deployment name -> ready pods now (what the cluster actually serves with)."""
        with self.lock:
            return {name: self._status(d)["readyReplicas"] for (_, name), d in self.deployments.items()}

    # -- objects -----------------------------------------------------------------------------------
    def _meta(self, namespace: str | None, name: str, labels: dict[str, str]) -> dict[str, Any]:
        meta = {"name": name, "uid": f"uid-{next(self._ids)}", "resourceVersion": str(next(self._ids)),
                "creationTimestamp": NOW, "labels": dict(labels)}  # fmt: skip
        if namespace:
            meta["namespace"] = namespace
        return meta

    def node_objects(self) -> list[dict[str, Any]]:
        return [
            {"apiVersion": "v1", "kind": "Node",
             "metadata": self._meta(None, n, {"kubernetes.io/hostname": n}),
             "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"},
                        "capacity": {"cpu": cpu, "memory": mem, "pods": "110"},
                        "conditions": [{"type": "Ready", "status": "True"}]}}
            for n, (cpu, mem) in self.nodes.items()
        ]  # fmt: skip

    def _pod(self, ns: str, name: str, labels: dict[str, str], spec: dict[str, Any], ready_at: float) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": self._meta(ns, name, labels), "spec": spec,
                "status": {"phase": "Running"}, "_ready_at": ready_at}  # fmt: skip

    def pod_objects(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for pod in self.pods.values():
            p = {k: v for k, v in pod.items() if not k.startswith("_")}
            ready = "True" if now >= pod["_ready_at"] else "False"
            p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}
            out.append(p)
        return out

    def _owned(self, ns: str, name: str) -> list[tuple[str, str]]:
        return sorted((k for k, p in self.pods.items() if k[0] == ns and p.get("_owner") == name),
                      key=lambda k: self.pods[k]["_seq"])  # fmt: skip

    def _schedule(self, ns: str, dep: dict[str, Any]) -> None:
        name, tmpl = dep["metadata"]["name"], dep["spec"]["template"]
        terms = tmpl["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        node = terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
        owned = self._owned(ns, name)
        want = int(dep["spec"].get("replicas", 1))
        for key in owned[want:][::-1]:
            del self.pods[key]
        for _ in range(want - len(owned)):
            never = self.ready_delay_s is None or node in self.never_ready_nodes
            ready_at = float("inf") if never else time.monotonic() + float(self.ready_delay_s or 0.0)
            spec = {**copy.deepcopy(tmpl["spec"]), "nodeName": node}
            seq = next(self._ids)
            pod = self._pod(ns, f"{name}-{seq:05d}", tmpl["metadata"].get("labels", {}), spec, ready_at)
            pod["_owner"], pod["_seq"] = name, seq
            self.pods[(ns, pod["metadata"]["name"])] = pod

    def _status(self, dep: dict[str, Any]) -> dict[str, Any]:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        now = time.monotonic()
        owned = self._owned(ns, name)
        ready = sum(now >= self.pods[k]["_ready_at"] for k in owned)
        return {"observedGeneration": dep["metadata"]["generation"], "replicas": len(owned),
                "updatedReplicas": len(owned), "readyReplicas": ready, "availableReplicas": ready}  # fmt: skip

    def deployment_view(self, dep: dict[str, Any]) -> dict[str, Any]:
        return {**dep, "status": self._status(dep)}

    # -- verbs ----------------------------------------------------------------------------------------
    def create_deployment(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("metadata", {}).get("name")
        if not name:
            raise ApiError(422, "Deployment.apps is invalid: metadata.name: Required value")
        if (ns, name) in self.deployments:
            raise ApiError(409, f'deployments.apps "{name}" already exists')
        dep = copy.deepcopy(body)
        dep["metadata"] = {**self._meta(ns, name, body["metadata"].get("labels", {})), "generation": 1}
        self.deployments[(ns, name)] = dep
        self._schedule(ns, dep)
        return self.deployment_view(dep)

    def patch_deployment(self, ns: str, name: str, content_type: str, body: Any) -> dict[str, Any]:
        dep = self.deployments.get((ns, name))
        if dep is None:
            raise ApiError(404, f'deployments.apps "{name}" not found')
        if content_type.startswith("application/json-patch+json"):
            new = json_patch(dep, body)
        elif content_type.startswith(("application/strategic-merge-patch+json", "application/merge-patch+json")):
            new = merge(dep, body)
        else:
            raise ApiError(415, f"unsupported patch content type {content_type!r}")
        if new["spec"] != dep["spec"]:
            new["metadata"]["generation"] = dep["metadata"]["generation"] + 1
        new["metadata"]["resourceVersion"] = str(next(self._ids))
        self.deployments[(ns, name)] = new
        self._schedule(ns, new)
        return self.deployment_view(new)


def _list(kind: str, items: list[dict[str, Any]], api: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items}


def route(c: FakeCluster, method: str, path: str, q: dict[str, str], ctype: str, body: Any) -> Any:
    labels, fields = q.get("labelSelector", ""), q.get("fieldSelector", "")
    if path == "/version":
        return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0", "gitTreeState": "clean",
                "buildDate": NOW, "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}  # fmt: skip
    if path == "/api/v1/nodes" and method == "GET":
        return _list("NodeList", [n for n in c.node_objects() if match_labels(n["metadata"]["labels"], labels)])
    if m := re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/pods", path):
        pods = [p for p in c.pod_objects() if m.group(1) in (None, p["metadata"]["namespace"])]
        pods = [p for p in pods if match_labels(p["metadata"]["labels"], labels) and match_fields(p, fields)]
        return _list("PodList", pods)
    if m := re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?", path):
        ns, name = m.groups()
        if name is None and method == "GET":
            deps = [c.deployment_view(d) for (n, _), d in c.deployments.items() if n == ns]
            return _list(
                "DeploymentList", [d for d in deps if match_labels(d["metadata"]["labels"], labels)], "apps/v1"
            )
        if name is None and method == "POST":
            return c.create_deployment(ns, body)
        if method == "GET":
            if (ns, name) not in c.deployments:
                raise ApiError(404, f'deployments.apps "{name}" not found')
            return c.deployment_view(c.deployments[(ns, name)])
        if method == "PATCH":
            return c.patch_deployment(ns, name, ctype, body)
    if path == "/apis/metrics.k8s.io/v1beta1/nodes":
        return _list("NodeMetricsList", [node_metrics(c, n) for n in c.nodes], "metrics.k8s.io/v1beta1")
    if m := re.fullmatch(r"/apis/metrics.k8s.io/v1beta1/namespaces/([^/]+)/pods", path):
        pods = [p for p in c.pod_objects() if p["metadata"]["namespace"] == m.group(1)]
        items = [pod_metrics(p) for p in pods if match_labels(p["metadata"]["labels"], labels)]
        return _list("PodMetricsList", items, "metrics.k8s.io/v1beta1")
    raise ApiError(404, f"the server could not find the requested resource ({method} {path})")


def pod_metrics(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod uses half of what it requests."""
    containers = []
    for ct in pod["spec"]["containers"]:
        req = ct.get("resources", {}).get("requests", {})
        cpu = float(req.get("cpu", "0m").rstrip("m") or 0) / (1000 if req.get("cpu", "").endswith("m") else 1)
        mem = float(req.get("memory", "0Mi").rstrip("Mi") or 0)
        containers.append({"name": ct["name"], "usage": {"cpu": f"{round(cpu * 500)}m", "memory": f"{mem / 2:g}Mi"}})
    meta = {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"]}
    return {"metadata": meta, "timestamp": NOW, "window": "30s", "containers": containers}


def node_metrics(c: FakeCluster, node: str) -> dict[str, Any]:
    pods = [pod_metrics(p) for p in c.pod_objects() if p["spec"].get("nodeName") == node]
    cpu = sum(int(x["usage"]["cpu"].rstrip("m")) for p in pods for x in p["containers"])
    mem = sum(float(x["usage"]["memory"].rstrip("Mi")) for p in pods for x in p["containers"])
    return {"metadata": {"name": node}, "timestamp": NOW, "window": "30s",
            "usage": {"cpu": f"{cpu}m", "memory": f"{mem:g}Mi"}}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    cluster: FakeCluster

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        ctype = self.headers.get("Content-Type", "")
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        c = self.cluster
        with c.lock:
            c.requests.append(Request(self.command, url.path, query, ctype, body))
            try:
                fault = next((f for f in c.faults if f.times > 0 and f.method == self.command
                              and f.path_part in url.path), None)  # fmt: skip
                if fault is not None:
                    fault.times -= 1
                    raise ApiError(fault.status, f"injected {fault.status} for {self.command} {url.path}")
                code, out = 200, route(c, self.command, url.path, query, ctype, body)
                if self.command == "POST":
                    code = 201
            except ApiError as err:
                code, out = err.status, status_object(err.status, err.message)
        data = json.dumps(out).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


class FakeApiServer:
    """Serve a :class:`FakeCluster` on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, cluster: FakeCluster):
        handler = type("Handler", (_Handler,), {"cluster": cluster})
        self.cluster = cluster
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def kubeconfig(self, path: str) -> str:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": "lwmecps"}}],
        }  # fmt: skip
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
