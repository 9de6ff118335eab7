"""The default backend: the simulated city of :mod:`envs.sim`."""

from __future__ import annotations

import numpy as np

from envs.backends.base import Backend, Outcome, Snapshot
from envs.sim import SlotModel
from envs.world import World


class SimulatedBackend(Backend):
    def __init__(self, world: World):
        self.world = world
        self.model = SlotModel(world)
        self.trace = world.demand.trace(world.demand.default_key)
        self.t = 0
        self.placement = np.zeros(world.n_slots, dtype=np.int64)
        self.prev = self.placement

    def reset(self, trace: int | str, start_slot: int, placement: np.ndarray) -> Snapshot:
        self.trace = self.world.demand.trace(trace)
        self.t = start_slot
        self.placement = self.prev = placement.copy()
        self.model.reset_state(1)
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        day = len(self.trace)
        return Snapshot(slot=self.t % day, users=self.trace[self.t % day], placement=self.placement)

    def apply(self, placement: np.ndarray) -> None:
        self.placement = placement

    def wait_until_stable(self) -> bool:
        return True

    def serve_slot(self) -> Outcome:
        users = self.trace[self.t % len(self.trace)]
        res = self.model.evaluate(self.placement[None], users[None], previous=self.prev[None])
        self.prev = self.placement
        self.t += 1
        return Outcome(
            latency_ms=float(res.latency_ms[0]),
            violations=float(res.violations[0]),
            unserved=float(res.unserved[0]),
            service_latency_ms=res.service_latency_ms[0],
            requests=float(res.requests[0]),
        )
