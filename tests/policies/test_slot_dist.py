"""The batched slot categorical agrees with RLlib's multi-categorical (same inputs, same numbers)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.distribution.torch.torch_distribution import TorchMultiCategorical

from policies.rllib.slot_dist import TorchSlotCategorical, pad_logits


@pytest.mark.parametrize("nvec", [[5, 5, 5, 5], [3, 5, 2, 4, 5]])
def test_logp_entropy_kl_and_mode_match_the_multi_categorical(nvec):
    torch.manual_seed(0)
    space = gym.spaces.MultiDiscrete(nvec)
    logits, other = torch.randn(64, sum(nvec)), torch.randn(64, sum(nvec))
    logits[:, 1] = -1e30  # a masked count
    ours = TorchSlotCategorical.get_partial_dist_cls(space=space, nvec=nvec)
    theirs = TorchMultiCategorical.get_partial_dist_cls(space=space, input_lens=nvec)
    a, b = ours.from_logits(logits), theirs.from_logits(logits)
    actions = torch.as_tensor(np.stack([space.sample() for _ in range(64)]))
    torch.testing.assert_close(a.logp(actions), b.logp(actions))
    torch.testing.assert_close(a.entropy(), b.entropy())
    torch.testing.assert_close(a.kl(ours.from_logits(other)), b.kl(theirs.from_logits(other)))
    torch.testing.assert_close(a.to_deterministic().sample(), b.to_deterministic().sample())
    assert ours.required_input_dim(space) == sum(nvec)


def test_samples_follow_the_probabilities_and_never_take_padding_or_masked_counts():
    nvec = [2, 4]
    logits = torch.log(torch.tensor([[0.25, 0.75, 0.1, 0.0, 0.6, 0.3]])).expand(20000, 6)
    dist = TorchSlotCategorical.from_logits(logits, nvec=nvec)
    s = dist.sample()
    assert s.shape == (20000, 2)
    assert s[:, 0].max() <= 1 and s[:, 1].max() <= 3 and not (s[:, 1] == 1).any()
    assert abs(float((s[:, 0] == 1).float().mean()) - 0.75) < 0.02
    assert abs(float((s[:, 1] == 2).float().mean()) - 0.6) < 0.02


def test_padding_is_placed_after_each_slot():
    padded = pad_logits(torch.arange(5.0)[None], [2, 3])
    assert padded.shape == (1, 2, 3)
    assert padded[0, 0, :2].tolist() == [0.0, 1.0] and padded[0, 0, 2] < -1e30
    assert padded[0, 1].tolist() == [2.0, 3.0, 4.0]
