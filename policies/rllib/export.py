"""Framework-neutral export of a trained policy: plain torch weights + metadata JSON, loadable without Ray.

``weights.pt`` is the ``state_dict`` (plain tensors, ``torch.save``) of the policy path: for RLlib's default
modules one ``nn.Sequential`` (actor encoder then action head; for DQN the advantage head, whose argmax over
allowed actions is the greedy action of the dueling Q-network), for the slot-shared PPO module its
:class:`~policies.rllib.slotnet.SlotNet`. ``metadata.json`` says how to rebuild it (``architecture`` and ``layers``
or ``slot_net``) and what it was trained for. :func:`load_export` rebuilds the network with plain torch and acts
from these two files alone.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from policies.rllib.layout import MASK_KEY, OBS_KEY, ActionLayout
from policies.rllib.slotnet import SlotNet

WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"
FORMAT = "lwmecps-policy-export"
FORMAT_VERSION = 1

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def _layer_spec(layer: nn.Module) -> dict[str, Any]:
    if isinstance(layer, nn.Linear):
        return {"type": "linear", "in": layer.in_features, "out": layer.out_features}
    if isinstance(layer, nn.LayerNorm):
        return {"type": "layernorm", "dim": list(layer.normalized_shape), "eps": layer.eps}
    name = type(layer).__name__.lower()
    if name in _ACTIVATIONS:
        return {"type": name}
    raise ValueError(f"export: unsupported layer {type(layer).__name__} in the policy network")


def build_mlp(layers: list[dict[str, Any]]) -> nn.Sequential:
    """The pure-torch network described by ``metadata["layers"]``."""
    mods: list[nn.Module] = []
    for spec in layers:
        kind = spec["type"]
        if kind == "linear":
            mods.append(nn.Linear(spec["in"], spec["out"]))
        elif kind == "layernorm":
            mods.append(nn.LayerNorm(spec["dim"], eps=spec["eps"]))
        elif kind in _ACTIVATIONS:
            mods.append(_ACTIVATIONS[kind]())
        else:
            raise ValueError(f"export: unknown layer type {kind!r}")
    return nn.Sequential(*mods)


def policy_path(module: Any, algorithm: str) -> nn.Module:
    """The module's observation -> action-logits path (a copy): one ``nn.Sequential``, or the module's SlotNet."""
    if isinstance(getattr(module, "net", None), SlotNet):
        return copy.deepcopy(module.net)
    if algorithm in ("PPO", "APPO"):
        enc = module.encoder
        parts: list[nn.Module] = [getattr(enc, "actor_encoder", None) or enc.encoder, module.pi]
    elif algorithm == "DQN":
        parts = [module.encoder, module.af]
    elif algorithm == "SAC":
        parts = [module.pi_encoder, module.pi]
    else:
        raise ValueError(f"export: unknown algorithm {algorithm!r}")
    leaves = [m for part in parts for m in part.modules() if not list(m.children())]
    for leaf in leaves:
        _layer_spec(leaf)  # fail on anything we cannot rebuild
    return nn.Sequential(*(copy.deepcopy(leaf) for leaf in leaves))


def write_export(
    out_dir: str | Path,
    net: nn.Module,
    layout: ActionLayout,
    *,
    algorithm: str,
    env_id: str | None,
    env_config: dict[str, Any],
    spaces: dict[str, str],
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``weights.pt`` and ``metadata.json`` into ``out_dir``; returns ``out_dir``."""
    import ray  # only for its version string

    try:
        json.dumps(env_config)
        json.dumps(metrics or {})
    except TypeError as e:
        raise ValueError(f"export: env_config and metrics must be JSON-serialisable ({e})") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, out / WEIGHTS_FILE)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": algorithm,
        "env_id": env_id,
        "env_config": env_config,
        "observation_dim": layout.obs_dim,
        "nvec": list(layout.nvec),
        "flat_action": layout.flat,
        "observation_space": spaces["observation_space"],
        "action_space": spaces["action_space"],
        **_architecture(net),
        "ray_version": ray.__version__,
        "torch_version": torch.__version__,
        "metrics": metrics or {},
        "created_unix": time.time(),
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    return out


def _architecture(net: nn.Module) -> dict[str, Any]:
    if isinstance(net, SlotNet):
        return {"architecture": "slot-shared", "slot_net": net.spec}
    assert isinstance(net, nn.Sequential)
    return {"architecture": "mlp", "layers": [_layer_spec(m) for m in net]}


def _rebuild(meta: dict[str, Any]) -> nn.Module:
    kind = meta.get("architecture", "mlp")
    if kind == "slot-shared":
        return SlotNet(**meta["slot_net"])
    if kind == "mlp":
        return build_mlp(meta["layers"])
    raise ValueError(f"export: unknown architecture {kind!r}")


@dataclass
class ExportedPolicy:
    """A policy rebuilt from an export with plain torch: greedy actions for batched env observations."""

    net: nn.Module
    layout: ActionLayout
    meta: dict[str, Any]

    @torch.no_grad()
    def greedy(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        inputs = self.layout.module_obs(obs)
        logits = self.net(torch.from_numpy(inputs[OBS_KEY])).numpy()
        masked = np.where(inputs[MASK_KEY] > 0, logits, -np.inf)
        return self.layout.greedy(masked)


def load_export(export_dir: str | Path) -> ExportedPolicy:
    """Rebuild an exported policy; needs only torch and numpy."""
    path = Path(export_dir)
    meta_file, weights_file = path / METADATA_FILE, path / WEIGHTS_FILE
    if not (meta_file.exists() and weights_file.exists()):
        raise ValueError(f"export: {path} lacks {METADATA_FILE} or {WEIGHTS_FILE}")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"export: {meta_file} is not a {FORMAT} v{FORMAT_VERSION} file")
    net = _rebuild(meta)
    net.load_state_dict(torch.load(weights_file, weights_only=True))
    net.eval()
    layout = ActionLayout(int(meta["observation_dim"]), tuple(meta["nvec"]), bool(meta["flat_action"]))
    return ExportedPolicy(net, layout, meta)


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    env_id: str | None = None,
    env_config: dict[str, Any] | None = None,
) -> Path:
    """Export the policy of an Algorithm checkpoint (env and algorithm read from it unless given)."""
    from policies.rllib.loading import algorithm_of, load_module, module_layout, read_info
    from policies.rllib.registration import make_env

    info = read_info(checkpoint)
    env_id = env_id or info.env_id
    if env_id is None:
        raise ValueError(f"export: {checkpoint} does not name its env; pass env_id")
    env_config = dict(info.env_config if env_config is None else env_config)
    module = load_module(checkpoint)
    env = make_env(env_id, env_config)
    try:
        layout = module_layout(module, env.observation_space, env.action_space)
        spaces = {"observation_space": str(env.observation_space), "action_space": str(env.action_space)}
    finally:
        env.close()
    algorithm = algorithm_of(module)
    return write_export(
        out_dir,
        policy_path(module, algorithm),
        layout,
        algorithm=algorithm,
        env_id=env_id,
        env_config=env_config,
        spaces=spaces,
        metrics=metrics,
    )
