"""The policy deployment: one Serve replica set serving every deployed model through model multiplexing.

Why multiplexing rather than one Serve deployment per model: deploying, swapping and undeploying a model then never
changes the Serve application (no ``serve.run`` from inside the ingress, no redeploy of the config a KubeRay
RayService owns), a deployed model survives any ingress restart because it is only a document in MongoDB plus the
model id the ingress routes with, and a swap is atomic from a client's view: the new model is loaded (warmed) on a
replica while requests keep going to the old one, then the deployment document points at the new id. Each replica
keeps the ``max_models`` most recently used models (LRU, Serve's ``@serve.multiplexed``); Serve routes a request
to a replica that already holds its model when there is one.

The replica loads the framework-neutral export (plain torch, :mod:`policies.rllib.export`) from
``<storage_root>/models/<model_id>/export``; it never needs MongoDB or the RLlib Algorithm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from serve_app.artifacts import export_dir, fetch_local

#: models kept loaded per replica (least recently used are dropped)
MAX_MODELS_PER_REPLICA = 8


class ModelNotFound(LookupError):
    """The model's export is missing or unreadable (the ingress maps it to HTTP 404/409)."""


@serve.deployment(name="PolicyServer", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class PolicyServer:
    """Greedy placements of multiplexed exported policies (``handle.options(multiplexed_model_id=<model id>)``)."""

    def __init__(self, storage_root: str, torch_threads: int = 1):
        import torch

        torch.set_num_threads(torch_threads)  # two cores shared with the proxy, ingress and training jobs
        self._root = storage_root

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, model_id: str) -> Any:
        return load_policy(self._root, model_id)

    async def describe(self) -> dict[str, Any]:
        """Load (warm) the request's model and return what it acts on: ``{"nvec": [...], "obs_dim": D, ...}``."""
        policy = await self.get_model(serve.get_multiplexed_model_id())
        return describe_policy(policy)

    async def __call__(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """Greedy replica counts ``(B, K)`` for batched ``{"observations": (B, D), "action_mask": (B, M)}``."""
        policy = await self.get_model(serve.get_multiplexed_model_id())
        return policy.greedy(observations)


def load_policy(storage_root: str, model_id: str) -> Any:
    """The exported policy of ``model_id`` (plain torch), or :class:`ModelNotFound` with one clean line."""
    from policies.rllib.export import load_export

    try:
        return load_export(fetch_local(export_dir(storage_root, model_id)))
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotFound(f"model {model_id}: its exported policy cannot be loaded ({e})") from None


def describe_policy(policy: Any) -> dict[str, Any]:
    layout = policy.layout
    return {"obs_dim": layout.obs_dim, "nvec": list(layout.nvec), "algorithm": policy.meta.get("algorithm")}
