"""Multi-node Ray on one machine, run by test_multinode.py in a process of its own (never next to another runtime).

``python multinode_run.py OUT_DIR`` starts a two-node cluster with :class:`ray.cluster_utils.Cluster` (a head and a
worker; custom resources mark the worker and give each node one serving slot), then

1. trains PPO on ``lwmecps/TestApp4BS-v0`` for two iterations with its env runner required on the worker node
   (``custom_resources_per_env_runner={"worker": 1}``), and exports the policy into ``OUT_DIR/storage``;
2. serves that export with the service's ``PolicyServer`` (two replicas, each needing the node's one serving slot,
   so one per node) behind an HTTP deployment, and sends requests until both replicas answered.

It prints one JSON line: the node ids and what each part observed. The asserting is the test's job.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.cluster_utils import Cluster

ENV_ID = "lwmecps/TestApp4BS-v0"
STORE = 80 * 1024**2  # object store per node
MODELS = [f"m{i}" for i in range(6)]  # copies of one export under several ids: requests spread over replicas


def train(out: Path) -> dict[str, Any]:
    from policies.rllib.configs import algorithm_config
    from policies.rllib.export import export_checkpoint

    hparams = {"train_batch_size": 256, "minibatch_size": 64, "num_epochs": 2, "fcnet_hiddens": [16, 16]}
    config = algorithm_config("PPO", ENV_ID, hparams=hparams, num_env_runners=1, num_envs_per_env_runner=2)
    config.env_runners(num_cpus_per_env_runner=1, custom_resources_per_env_runner={"worker": 1})
    algo = config.build_algo()
    try:
        runner_nodes = algo.env_runner_group.foreach_env_runner(
            lambda _runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
        results = [algo.train() for _ in range(2)]
        healthy = algo.env_runner_group.num_healthy_remote_workers()
        checkpoint = algo.save_to_path(str(out / "checkpoint"))
    finally:
        algo.stop()
    export = out / "storage" / "models" / MODELS[0] / "export"
    export_checkpoint(checkpoint, export, env_id=ENV_ID)
    for model in MODELS[1:]:
        shutil.copytree(export, out / "storage" / "models" / model / "export")
    return {
        "env_runner_nodes": runner_nodes,
        "healthy_env_runners": healthy,
        "iterations": [r["training_iteration"] for r in results],
        "env_steps_sampled": results[-1]["num_env_steps_sampled_lifetime"],
    }


def serve_policy(out: Path) -> dict[str, Any]:
    from serve_app.deployments.policy import PolicyServer

    class LocatedPolicyServer(PolicyServer.func_or_class):  # type: ignore[name-defined,misc]
        """The service's PolicyServer, also telling which node answered."""

        async def __call__(self, observations: dict[str, np.ndarray]) -> Any:
            actions = await super().__call__(observations)
            return actions.tolist(), ray.get_runtime_context().get_node_id()

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Front:
        def __init__(self, policy: Any):
            self.policy = policy

        async def __call__(self, request: Any) -> dict[str, Any]:
            body = await request.json()
            obs = {k: np.asarray(v, dtype=np.float32) for k, v in body["obs"].items()}
            actions, node = await self.policy.options(multiplexed_model_id=body["model"]).remote(obs)
            return {"actions": actions, "node": node}

    policy = serve.deployment(LocatedPolicyServer, name="PolicyServer").options(
        num_replicas=2, ray_actor_options={"num_cpus": 0, "resources": {"serve_slot": 1}}
    )
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(Front.bind(policy.bind(str(out / "storage"))), name="multinode", route_prefix="/")
    obs = observation()
    answers = []
    for i in range(60):
        body = json.dumps({"model": MODELS[i % len(MODELS)], "obs": obs}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answers.append(json.loads(resp.read()))
        if i >= len(MODELS) and len({a["node"] for a in answers}) == 2:
            break
    serve.shutdown()
    return {"answers": answers}


def observation() -> dict[str, list[list[float]]]:
    import gymnasium as gym

    import envs  # noqa: F401 - registers the ids

    env = gym.make(ENV_ID)
    try:
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    return {k: [np.asarray(v).tolist()] for k, v in obs.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(out: Path) -> None:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"serve_slot": 1},
            "object_store_memory": STORE,
            "include_dashboard": False,
        },
    )
    try:
        worker = cluster.add_node(num_cpus=1, resources={"worker": 1, "serve_slot": 1}, object_store_memory=STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        report: dict[str, Any] = {"head": cluster.head_node.node_id, "worker": worker.node_id}
        report["nodes_alive"] = sum(1 for n in ray.nodes() if n["Alive"])
        report.update(train(out))
        report.update(serve_policy(out))
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
