"""The real Serve application on two Ray nodes, run by test_multinode_serve.py in a process of its own.

``python multinode_serve_run.py OUT_DIR`` starts the embedded MongoDB (nx-27017) and a two-node
:class:`ray.cluster_utils.Cluster` (a head and a worker on this machine), bootstraps the admin, trains PPO on
``lwmecps/TestApp4BS-v0`` for one tiny iteration and registers its export as several models, then runs the
application of ``serve_app.app:build_app`` with two ingress and two policy replicas and
``max_replicas_per_node=1`` (so one of each per node). Over real HTTP it logs in, deploys every model
(``POST /models/{id}/deploy``) and sends predicts, each with its own ``x-request-id``.

Which replica answered a request is read from Serve's replica logs (a request id travels from the proxy through
the ingress to the policy replica, and each replica logs it), and where each replica runs is asked of the replica
actor itself (``__ray_call__``). Locality routing of the proxy is turned off: in a real cluster every node runs a
proxy that prefers its own node's ingress; on one machine only the head's proxy can bind the port.

Every process of the run (MongoDB, GCS, raylets, workers) inherits ``MARKER=<token>`` from the environment the test
gives this script (Ray workers rewrite their command line, not their environment): that is how the test finds any
process left behind. It prints one JSON line (``REPORT {...}``): node ids, replicas, the answers and which replicas
served them, the timings, and the marked processes seen while serving. The asserting is the test's job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve
from ray.cluster_utils import Cluster

ENV_ID = "lwmecps/TestApp4BS-v0"
STORE = 80 * 1024**2  # object store per node
N_MODELS = 6  # models are multiplexed: several ones spread over the policy replicas
PASSWORD = "admin-password-multinode"
MARKER = "MULTINODE_SERVE_RUN"  # environment variable naming this run's processes
APP_REPLICA = re.compile(r"^SERVE_REPLICA::lwmecps#(?P<deployment>\w+)#(?P<uid>\w+)$")


def tiny_export(out: Path) -> Path:
    """One PPO iteration in the driver (no env runner actors), exported framework-neutral."""
    from policies.rllib.configs import algorithm_config
    from policies.rllib.export import export_checkpoint

    hparams = {"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1, "fcnet_hiddens": [16, 16]}
    algo = algorithm_config("PPO", ENV_ID, hparams=hparams, num_envs_per_env_runner=1).build_algo()
    try:
        algo.train()
        checkpoint = algo.save_to_path(str(out / "checkpoint"))
    finally:
        algo.stop()
    export_checkpoint(checkpoint, out / "export", env_id=ENV_ID)
    return out / "export"


def register_models(settings: Any, export: Path) -> list[str]:
    """The export as ``N_MODELS`` ready models (as a finished training task registers one)."""
    from bson import ObjectId

    from serve_app import artifacts
    from serve_app.store.client import get_db
    from serve_app.store.models import register_model

    ids = []
    for i in range(N_MODELS):
        model_id = str(ObjectId())
        location = artifacts.model_dir(settings.storage_root, model_id)
        shutil.copytree(export, artifacts.export_dir(settings.storage_root, model_id))
        info = {"algorithm": "PPO", "env_id": ENV_ID, "env_config": {}, "export_uri": f"{location}/export"}
        register_model(
            get_db(settings), name=f"multinode-{i}", type="ppo", artifact_uri=location, info=info, model_id=model_id
        )
        ids.append(model_id)
    return ids


def run_app(settings: Any, port: int) -> None:
    from serve_app.app import APP_NAME, build_app

    overrides = {
        "mongodb_uri": settings.mongodb_uri,
        "mongodb_db": settings.mongodb_db,
        "data_dir": str(settings.data_dir),
        "storage_root": settings.storage_root,
        "wandb_mode": "disabled",
    }
    args = {"settings": overrides, "ingress_replicas": 2, "policy_replicas": 2, "max_replicas_per_node": 1}
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the application did not answer /health within 120 s")
        time.sleep(0.5)


def observation() -> dict[str, list[float]]:
    import gymnasium as gym

    import envs  # noqa: F401 - registers the ids

    env = gym.make(ENV_ID)
    try:
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    return {k: [float(x) for x in v] for k, v in obs.items()}


def exercise(base: str, model_ids: list[str], rounds: int) -> dict[str, Any]:
    """Log in, deploy every model, then ``rounds`` predicts per deployment; each request carries its own id."""
    token = httpx.post(f"{base}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}, timeout=60)
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    answers = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as api:
        deployments = []
        for model_id in model_ids:
            r = api.post(f"/api/v1/models/{model_id}/deploy")
            r.raise_for_status()
            deployments.append(r.json()["deployment_id"])
        obs = observation()
        for i in range(rounds * len(deployments)):
            dep = deployments[i % len(deployments)]
            request_id = f"mn-{uuid.uuid4().hex}"
            r = api.post(f"/api/v1/deployments/{dep}/predict", json=obs, headers={"x-request-id": request_id})
            answers.append({"request_id": request_id, "status": r.status_code, "body": r.json()})
    return {"deployments": deployments, "answers": answers, "action_mask": obs["action_mask"]}


def _where(_self: Any) -> dict[str, Any]:
    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def app_replicas() -> dict[str, dict[str, Any]]:
    """Replica unique id -> its deployment, node id and pid, asked of each live replica actor."""
    found: dict[str, dict[str, Any]] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        match = APP_REPLICA.match(entry["name"])
        if entry["namespace"] == "serve" and match:
            actor = ray.get_actor(entry["name"], namespace="serve")
            ref: Any = actor.__ray_call__.remote(_where)
            where = dict(ray.get(ref, timeout=30))
            found[match["uid"]] = {"deployment": match["deployment"], **where}
    return found


def served_by(logs_dirs: set[Path], replicas: dict[str, Any], request_ids: list[str]) -> dict[str, list[str]]:
    """Request id -> the replica uids whose Serve log names it (the ingress and the policy replica)."""
    wanted = set(request_ids)
    seen: dict[str, list[str]] = {r: [] for r in request_ids}
    for logs in logs_dirs:
        for path in (logs / "serve").glob("replica_lwmecps_*.log"):
            uid = path.stem.rsplit("_", 1)[-1]
            if uid not in replicas:
                continue
            for rid in set(re.findall(r"mn-[0-9a-f]{32}", path.read_text(errors="replace"))) & wanted:
                seen[rid].append(uid)
    return seen


def marked_processes(token: str) -> dict[int, str]:
    """Live (non-zombie) processes other than this one whose environment has ``MARKER=token``: pid -> start time."""
    needle = f"\0{MARKER}={token}\0".encode()
    found: dict[int, str] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            hit = needle in b"\0" + (proc / "environ").read_bytes()
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if hit and (start := start_time(int(proc.name))) is not None:
            found[int(proc.name)] = start
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    """Those of ``processes`` (pid -> start time) that still run (a reused pid has another start time)."""
    return [pid for pid, start in processes.items() if start_time(pid) == start]


def start_time(pid: int) -> str | None:
    """The start time (clock ticks after boot) of a live, non-zombie process; None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if stat[0] == "Z" else stat[19]


def main(out: Path) -> None:
    from serve_app.ray_head import free_port
    from serve_app.security import bootstrap_admin
    from serve_app.settings import Settings
    from serve_app.store.client import EmbeddedMongo, close_client, ensure_indexes, get_db

    os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"  # before the cluster: its proxy inherits it
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    report: dict[str, Any] = {}
    processes: dict[int, str] = {}
    mongo = EmbeddedMongo(out / "mongo")
    cluster: Cluster | None = None
    try:
        uri = mongo.start()
        report["mongo_pid"] = mongo.pid
        settings = Settings.explicit(
            mongodb_uri=uri,
            mongodb_db="multinode",
            data_dir=out / "data",
            storage_root=str(out / "storage"),
            admin_password=PASSWORD,
        )
        ensure_indexes(get_db(settings))
        bootstrap_admin(get_db(settings), settings)  # also persists the JWT secret both ingress replicas read
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "object_store_memory": STORE, "include_dashboard": False},
        )
        head, worker = cluster.head_node, cluster.add_node(num_cpus=1, object_store_memory=STORE)
        assert head is not None
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        report.update(head=head.node_id, worker=worker.node_id)
        report["nodes_alive"] = sum(1 for n in ray.nodes() if n["Alive"])
        timings["cluster_s"] = time.monotonic() - t0

        model_ids = register_models(settings, tiny_export(out))
        timings["train_export_s"] = time.monotonic() - t0 - sum(timings.values())

        port = free_port()
        run_app(settings, port)
        timings["app_start_s"] = time.monotonic() - t0 - sum(timings.values())
        report.update(exercise(f"http://127.0.0.1:{port}", model_ids, rounds=6))
        timings["http_s"] = time.monotonic() - t0 - sum(timings.values())

        report["replicas"] = app_replicas()
        logs = {Path(node.get_logs_dir_path()) for node in (head, worker)}
        report["served_by"] = served_by(logs, report["replicas"], [a["request_id"] for a in report["answers"]])
        report["app_status"] = str(serve.status().applications["lwmecps"].status)
        report["processes"] = processes = marked_processes(os.environ[MARKER])
    finally:
        t_stop = time.monotonic()
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        close_client()
        mongo.stop()
        timings["shutdown_s"] = time.monotonic() - t_stop
    report["left_after_shutdown"] = still_running(processes)
    timings["total_s"] = time.monotonic() - t0
    report["timings"] = {k: round(v, 1) for k, v in timings.items()}
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
