"""One batched categorical for all slots of a ``MultiDiscrete`` action (RLlib's is a Python loop over slots).

RLlib's ``TorchMultiCategorical`` builds one ``torch.distributions.Categorical`` per sub-action: on the reference
city (250 slots) that loop costs more than the whole network. :class:`TorchSlotCategorical` takes the same
input (the per-slot logits concatenated, ``sum(nvec)`` wide), pads them into a ``(B, K, max(nvec))`` tensor
(padding has probability 0) and works on that single distribution. Log-probabilities, entropies and KLs are sums
over the slots, exactly as for the multi-categorical.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.distribution.torch.torch_distribution import TorchDeterministic, TorchDistribution
from ray.rllib.utils.torch_utils import FLOAT_MIN

_INDEX: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}


def _index(nvec: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Positions of the concatenated logits in the padded ``K * max(nvec)`` layout."""
    key = (nvec, str(device))
    if key not in _INDEX:
        n_max = max(nvec)
        idx = [k * n_max + j for k, n in enumerate(nvec) for j in range(n)]
        _INDEX[key] = torch.as_tensor(idx, dtype=torch.long, device=device)
    return _INDEX[key]


def pad_logits(logits: torch.Tensor, nvec: Sequence[int]) -> torch.Tensor:
    """``(..., sum(nvec)) -> (..., K, max(nvec))``; padding gets the most negative float (probability 0)."""
    nv = tuple(int(n) for n in nvec)
    K, n_max = len(nv), max(nv)
    if all(n == n_max for n in nv):
        return logits.reshape(*logits.shape[:-1], K, n_max)
    out = logits.new_full((*logits.shape[:-1], K * n_max), FLOAT_MIN)
    out[..., _index(nv, logits.device)] = logits
    return out.reshape(*logits.shape[:-1], K, n_max)


class TorchSlotCategorical(TorchDistribution):
    """Independent categoricals, one per slot, as one batched ``Categorical``; use
    ``TorchSlotCategorical.get_partial_dist_cls(space=..., nvec=...)`` as an RLModule's ``action_dist_cls``."""

    def __init__(self, logits: torch.Tensor, nvec: Sequence[int]) -> None:
        self.nvec = tuple(int(n) for n in nvec)
        super().__init__(logits=logits, nvec=self.nvec)

    def _get_torch_distribution(self, logits: torch.Tensor, nvec: Sequence[int]) -> torch.distributions.Distribution:
        return torch.distributions.Categorical(logits=pad_logits(logits, nvec), validate_args=False)

    def logp(self, value: Any, **kwargs: Any) -> Any:
        return self._dist.log_prob(value.long()).sum(-1)

    def entropy(self, **kwargs: Any) -> Any:
        return self._dist.entropy().sum(-1)

    def kl(self, other: Any, **kwargs: Any) -> Any:
        return torch.distributions.kl.kl_divergence(self._dist, other._dist).sum(-1)

    def rsample(self, *, sample_shape: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError("TorchSlotCategorical: no reparameterised samples for categorical actions")

    def to_deterministic(self) -> Any:
        return TorchDeterministic(loc=self._dist.logits.argmax(-1))

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs: Any) -> int:
        assert isinstance(space, gym.spaces.MultiDiscrete)
        return int(np.sum(space.nvec))

    @classmethod
    def from_logits(cls, logits: Any, **kwargs: Any) -> TorchSlotCategorical:
        return cls(logits=logits, nvec=kwargs["nvec"])
