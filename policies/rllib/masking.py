"""RLModules that honour the env's action mask (torch, RLlib new API stack).

The env observation is ``Dict(observations=Box, action_mask=Box(0, 1))``. Every module here builds its networks
for the inner ``observations`` box only and applies the mask to its outputs in every forward pass
(inference, exploration, train and the target networks), so a masked action has probability 0 (PPO, APPO, SAC)
or Q-value -inf (DQN) and is never chosen, not merely punished by the reward.

* PPO / APPO act on the env's ``MultiDiscrete`` action: the logits are the per-slot categoricals concatenated,
  exactly like the mask, so one additive ``log(mask)`` masks every sub-action.
* DQN / SAC act on the flat ``Discrete`` joint action of :mod:`policies.rllib.flat` (RLlib supports no
  ``MultiDiscrete`` there); the mask is the joint mask of that wrapper.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.appo.torch.default_appo_torch_rl_module import DefaultAPPOTorchRLModule
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.algorithms.sac.sac_learner import (
    ACTION_LOG_PROBS,
    ACTION_LOG_PROBS_NEXT,
    ACTION_PROBS,
    ACTION_PROBS_NEXT,
    QF_TARGET_NEXT,
    QF_TWIN_PREDS,
)
from ray.rllib.algorithms.sac.sac_learner import QF_PREDS as SAC_QF_PREDS
from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.rl_module.apis import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.utils.torch_utils import FLOAT_MIN

from policies.rllib.layout import MASK_KEY, OBS_KEY

Batch = dict[str, Any]


def split_obs(batch: Batch) -> tuple[torch.Tensor, Batch]:
    """(mask, a shallow copy of ``batch`` whose ``obs`` is the inner observation tensor)."""
    obs = batch[Columns.OBS]
    if not isinstance(obs, dict) or MASK_KEY not in obs or OBS_KEY not in obs:
        raise ValueError(f"masked module: obs must be a dict with keys {OBS_KEY!r} and {MASK_KEY!r}")
    inner = dict(batch)
    inner[Columns.OBS] = obs[OBS_KEY]
    return obs[MASK_KEY], inner


def mask_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Add ``log(mask)`` clamped to the most negative float: masked logits get probability 0, never NaN."""
    return logits + torch.clamp(torch.log(mask), min=FLOAT_MIN)


class _DictObsMixin:
    """Builds the networks for ``observation_space["observations"]``; keeps the Dict as the module's space."""

    observation_space: Any

    def __init__(self, *args: Any, observation_space: gym.Space | None = None, **kwargs: Any):
        if not (isinstance(observation_space, gym.spaces.Dict) and {OBS_KEY, MASK_KEY} <= set(observation_space)):
            raise ValueError(
                f"masked module: observation_space must be Dict({OBS_KEY}=Box, {MASK_KEY}=Box), got {observation_space}"
            )
        self._obs_space_with_mask = observation_space
        super().__init__(*args, observation_space=observation_space[OBS_KEY], **kwargs)  # type: ignore[call-arg]

    def setup(self) -> None:
        super().setup()  # type: ignore[misc]
        self.observation_space = self._obs_space_with_mask


class _MaskedPolicyMixin(_DictObsMixin):
    """Masks ``action_dist_inputs`` of a PPO-family module (and its target network for APPO)."""

    def _forward_inference(self, batch: Batch, **kwargs: Any) -> Batch:
        mask, inner = split_obs(batch)
        out = super()._forward_inference(inner, **kwargs)  # type: ignore[misc]
        out[Columns.ACTION_DIST_INPUTS] = mask_logits(out[Columns.ACTION_DIST_INPUTS], mask)
        return out

    def _forward_exploration(self, batch: Batch, **kwargs: Any) -> Batch:
        mask, inner = split_obs(batch)
        out = super()._forward_exploration(inner, **kwargs)  # type: ignore[misc]
        out[Columns.ACTION_DIST_INPUTS] = mask_logits(out[Columns.ACTION_DIST_INPUTS], mask)
        return out

    def _forward_train(self, batch: Batch, **kwargs: Any) -> Batch:
        mask, inner = split_obs(batch)
        out = super()._forward_train(inner, **kwargs)  # type: ignore[misc]
        out[Columns.ACTION_DIST_INPUTS] = mask_logits(out[Columns.ACTION_DIST_INPUTS], mask)
        return out

    def compute_values(self, batch: Batch, embeddings: Any = None) -> torch.Tensor:
        if isinstance(batch[Columns.OBS], dict):
            _, batch = split_obs(batch)
        return super().compute_values(batch, embeddings)  # type: ignore[misc]


class MaskedPPOTorchRLModule(_MaskedPolicyMixin, DefaultPPOTorchRLModule):
    """PPO on the MultiDiscrete action with per-sub-action masked logits."""


class MaskedAPPOTorchRLModule(_MaskedPolicyMixin, DefaultAPPOTorchRLModule):
    """APPO on the MultiDiscrete action; the old (target) policy is masked too."""

    def forward_target(self, batch: Batch) -> Batch:
        mask, inner = split_obs(batch)
        out = super().forward_target(inner)
        out[TARGET_NETWORK_ACTION_DIST_INPUTS] = mask_logits(out[TARGET_NETWORK_ACTION_DIST_INPUTS], mask)
        return out


class MaskedDQNTorchRLModule(_DictObsMixin, DefaultDQNTorchRLModule):
    """DQN on the flat Discrete action: masked Q-values are -inf.

    RLlib's DQN module already excludes ``-inf`` Q-values from its epsilon-greedy random actions and the dueling
    mean, and the learner only gathers Q-values of taken (allowed) actions or argmax/max over masked ones, so
    every pass (act, explore, target) honours the mask. Distributional DQN (``num_atoms > 1``) is not supported.
    """

    def _qf_forward_helper(self, batch: Batch, encoder: Any, head: Any) -> Batch:
        mask, inner = split_obs(batch)
        out = super()._qf_forward_helper(inner, encoder, head)
        q = torch.as_tensor(out[QF_PREDS])
        out[QF_PREDS] = torch.where(mask > 0, q, torch.full_like(q, float("-inf")))
        return out


class MaskedSACTorchRLModule(_DictObsMixin, DefaultSACTorchRLModule):
    """Discrete SAC on the flat action: masked logits get probability 0 (log-probs via log_softmax, no NaN)."""

    def _forward_inference(self, batch: Batch, **kwargs: Any) -> Batch:
        mask, inner = split_obs(batch)
        return {Columns.ACTION_DIST_INPUTS: self._masked_logits(inner, mask)}

    def _forward_exploration(self, batch: Batch, **kwargs: Any) -> Batch:
        return self._forward_inference(batch)

    def _masked_logits(self, inner: Batch, mask: torch.Tensor) -> torch.Tensor:
        return mask_logits(self.pi(self.pi_encoder(inner)[ENCODER_OUT]), mask)

    def _forward_train(self, batch: Batch, **kwargs: Any) -> Batch:
        mask, curr = split_obs(batch)
        mask_next, nxt = split_obs({Columns.OBS: batch[Columns.NEXT_OBS]})
        out: Batch = {}
        logits_next = self._masked_logits(nxt, mask_next)
        out[ACTION_PROBS_NEXT] = torch.softmax(logits_next, dim=-1)
        out[ACTION_LOG_PROBS_NEXT] = torch.log_softmax(logits_next, dim=-1)
        out[QF_TARGET_NEXT] = self.forward_target(nxt, squeeze=False)
        out[SAC_QF_PREDS] = self._qf_forward_train_helper(curr, self.qf_encoder, self.qf, squeeze=False)
        if self.twin_q:
            out[QF_TWIN_PREDS] = self._qf_forward_train_helper(curr, self.qf_twin_encoder, self.qf_twin, squeeze=False)
        logits = self._masked_logits(curr, mask)
        out[ACTION_PROBS] = torch.softmax(logits, dim=-1)
        out[ACTION_LOG_PROBS] = torch.log_softmax(logits, dim=-1)
        return out


#: algorithm -> its masked module class
MODULE_CLASSES: dict[str, type] = {
    "PPO": MaskedPPOTorchRLModule,
    "APPO": MaskedAPPOTorchRLModule,
    "DQN": MaskedDQNTorchRLModule,
    "SAC": MaskedSACTorchRLModule,
}
