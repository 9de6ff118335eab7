"""PPO RLModule on :class:`~policies.rllib.slotnet.SlotNet`: one MLP shared by every slot, masked logits.

Select it with the hyperparameter ``module="slot-shared"`` (``algorithm_config`` fills ``model_config`` with the
env's slot layout). Same contract as :class:`~policies.rllib.masking.MaskedPPOTorchRLModule`: Dict observation,
``MultiDiscrete`` action, ``log(mask)`` added to the logits in every forward pass; the action distribution is
:class:`~policies.rllib.slot_dist.TorchSlotCategorical` (one batched categorical instead of a loop over slots).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from policies.rllib.masking import mask_logits, split_obs
from policies.rllib.slot_dist import TorchSlotCategorical
from policies.rllib.slotnet import SlotNet

Batch = dict[str, Any]


class SlotSharedPPOTorchRLModule(TorchRLModule, ValueFunctionAPI):
    """PPO (or APPO without target network use) over :class:`SlotNet`; ``model_config`` = ``{"slot_spec", ...}``."""

    def setup(self) -> None:
        cfg: dict[str, Any] = dict(self.model_config or {})  # type: ignore[arg-type]
        spec = cfg.get("slot_spec")
        if not spec:
            raise ValueError("slot-shared module: model_config must carry 'slot_spec' (see policies.rllib.slotnet)")
        nvec = [int(n) for n in self.action_space.nvec]  # type: ignore[union-attr]
        if list(spec["nvec"]) != nvec:
            raise ValueError(f"slot-shared module: slot_spec nvec {spec['nvec']} != action space {nvec}")
        hiddens = cfg.get("fcnet_hiddens", [64, 64])
        self.net = SlotNet(**{k: v for k, v in spec.items() if k != "hiddens"}, hiddens=hiddens)
        self.action_dist_cls = TorchSlotCategorical.get_partial_dist_cls(  # type: ignore[misc]
            space=self.action_space, nvec=nvec
        )

    def _forward(self, batch: Batch, **kwargs: Any) -> Batch:
        mask, inner = split_obs(batch)
        return {Columns.ACTION_DIST_INPUTS: mask_logits(self.net(inner[Columns.OBS]), mask)}

    def compute_values(self, batch: Batch, embeddings: Any = None) -> torch.Tensor:
        obs = batch[Columns.OBS]
        if isinstance(obs, dict):
            _, batch = split_obs(batch)
        return self.net.value(batch[Columns.OBS])
