"""The backend interface: what the environment needs from a cluster, simulated or real."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from envs.world import World


@dataclass
class Snapshot:
    """The cluster at the start of a slot: which slot of the day, connected users per cell, current placement."""

    slot: int
    users: np.ndarray  # (C,)
    placement: np.ndarray  # (K,) int


@dataclass
class Outcome:
    """What serving one slot measured."""

    latency_ms: float
    violations: float  # fraction of requests over the timeout, unserved included
    unserved: float
    service_latency_ms: np.ndarray  # (S,)
    requests: float


class Backend(ABC):
    """A cluster the environment acts on.

    The protocol per step is ``apply(placement)`` → ``wait_until_stable()`` → ``serve_slot()``; the
    placement given to ``apply`` is always feasible (the environment repairs actions first).
    """

    world: World

    @abstractmethod
    def reset(self, trace: int | str, start_slot: int, placement: np.ndarray) -> Snapshot: ...

    @abstractmethod
    def snapshot(self) -> Snapshot: ...

    @abstractmethod
    def apply(self, placement: np.ndarray) -> None: ...

    @abstractmethod
    def wait_until_stable(self) -> bool:
        """Block until the applied placement is in effect; ``False`` if it could not be (and was rolled back)."""

    @abstractmethod
    def serve_slot(self) -> Outcome:
        """Let the slot run under the current placement, measure it, and move to the next slot."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
