"""Backends act on a cluster (simulated or real) for :class:`envs.placement_env.PlacementEnv`."""

from envs.backends.base import Backend, Outcome, Snapshot
from envs.backends.simulated import SimulatedBackend

__all__ = ["Backend", "Outcome", "SimulatedBackend", "Snapshot"]
