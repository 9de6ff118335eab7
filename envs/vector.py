"""``PlacementVectorEnv``: ``num_envs`` copies of one world stepped at once (one batched slot model).

Every row is the MDP of :class:`envs.placement_env.PlacementEnv` (same repair, slot model, reward and
observation code, batched over rows), truncated after ``max_episode_steps`` (default: the scenario's
``episode_slots``) and auto-reset on the following ``step`` (Gymnasium's ``NEXT_STEP`` mode: that step ignores
the row's action and returns the first observation of its new episode with reward 0). Traces and start slots
of new episodes are drawn per row from the vector env's ``np_random``.

``reset(options=...)`` takes the single env's options, each either one value for every row or a sequence with
one value per row: ``trace``, ``start_slot``, ``placement``. Infos are dicts of arrays (``_key`` masks mark the
rows a key belongs to): step rows carry the single env's step info keys, reset rows ``slot`` and ``trace``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.placement_env import PlacementEnv
from envs.sim import SlotModel


class PlacementVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        num_envs: int = 8,
        config: dict[str, Any] | None = None,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
        cfg = {**(config or {}), **kwargs}
        if cfg.get("backend") is not None:
            raise ValueError("backend: the vector env only runs the simulated city")
        template = PlacementEnv(cfg)  # validates the config, builds the world and the spaces
        self.world, self.dyn, self.traces = template.world, template.dyn, template.traces
        self.start_slot = template.start_slot
        self.model = SlotModel(self.world)
        self.num_envs = B = int(num_envs)
        self.max_episode_steps = int(max_episode_steps or self.world.scenario.episode_slots)
        if self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps: must be >= 1, got {max_episode_steps}")
        self.single_action_space = template.action_space
        self.single_observation_space = template.observation_space
        self.action_space = batch_space(self.single_action_space, B)
        self.observation_space = batch_space(self.single_observation_space, B)
        self.day = self.world.demand.slots_per_day
        self.keys: list[int | str] = list(self.traces)
        K, S = self.world.n_slots, self.world.n_services
        self._users = np.zeros((len(self.traces), self.day, self.world.n_nodes))  # filled on first use per trace
        self._ready = np.zeros(len(self.traces), dtype=bool)
        self.placement = np.zeros((B, K), dtype=np.int64)
        self.trace_index = np.zeros(B, dtype=np.int64)
        self.t = np.zeros(B, dtype=np.int64)
        self.elapsed = np.zeros(B, dtype=np.int64)
        self.service_latency = np.zeros((B, S))
        self._autoreset = np.zeros(B, dtype=bool)

    # -- episodes ---------------------------------------------------------------------------------------
    def _per_row(self, value: Any, n: int, name: str) -> np.ndarray:
        arr = np.asarray(value)
        if arr.ndim == 0 or (name == "placement" and arr.ndim == 1):
            return np.broadcast_to(arr, (n, *arr.shape))
        if len(arr) != n:
            raise ValueError(f"options.{name}: expected one value or {n} values (one per env), got {len(arr)}")
        return arr

    def _trace_rows(self, keys: np.ndarray) -> np.ndarray:
        """Row indices into ``self.keys`` (``traces`` first); a key not seen yet is validated and added."""
        out = np.empty(len(keys), dtype=np.int64)
        for j, key in enumerate(keys.tolist()):
            if key not in self.keys:
                self.world.demand.trace(key)  # fails with a clear message on an unknown key
                self.keys.append(key)
                self._users = np.concatenate([self._users, np.zeros((1, *self._users.shape[1:]))])
                self._ready = np.append(self._ready, False)
            out[j] = self.keys.index(key)
        return out

    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any]) -> None:
        n = len(rows)
        if "trace" in options:
            tr = self._trace_rows(self._per_row(options["trace"], n, "trace"))
        else:
            tr = self.np_random.integers(len(self.traces), size=n)
        start = options.get("start_slot", self.start_slot)
        st = self._per_row(start, n, "start_slot") if start is not None else self.np_random.integers(self.day, size=n)
        if "placement" in options:
            want = self._per_row(np.asarray(options["placement"], dtype=np.int64), n, "placement")
            if want.shape[1:] != (self.world.n_slots,):
                raise ValueError(f"options.placement: expected shape ({self.world.n_slots},), got {want.shape[1:]}")
            place, rejected = self.dyn.repair(np.zeros_like(want), want)
            if rejected.any():
                raise ValueError("options.placement: exceeds node capacity")
        else:
            place = np.broadcast_to(self.dyn.initial_placement(), (n, self.world.n_slots))
        for i in np.unique(tr):
            if not self._ready[i]:
                self._users[i] = self.world.demand.trace(self.keys[i])
                self._ready[i] = True
        self.trace_index[rows] = tr
        self.t[rows] = np.asarray(st, dtype=np.int64)
        self.placement[rows] = place
        self.elapsed[rows] = 0
        self.service_latency[rows] = 0.0
        self.model.reset_state(self.num_envs, rows)

    def _reset_info(self, rows: np.ndarray) -> dict[str, Any]:
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[rows] = True
        keys = np.array([self.keys[i] for i in self.trace_index])
        return {"slot": self.t % self.day, "trace": keys, "_slot": mask, "_trace": mask.copy()}

    def _observe(self) -> dict[str, np.ndarray]:
        slot = self.t % self.day
        users = self._users[self.trace_index, slot]
        return self.dyn.observe(self.placement, users, slot, self.service_latency)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rows = np.arange(self.num_envs)
        self._reset_rows(rows, options or {})
        self._autoreset[:] = False
        return self._observe(), self._reset_info(rows)

    # -- one slot for every row --------------------------------------------------------------------------
    def step(self, actions):
        B = self.num_envs
        prev = self.placement
        placement, rejected = self.dyn.repair(prev, np.asarray(actions, dtype=np.int64).reshape(B, -1))
        users = self._users[self.trace_index, self.t % self.day]
        res = self.model.evaluate(placement, users, previous=prev)
        comp = self.dyn.reward(res.latency_ms, res.violations, placement, prev, rejected)
        reward = comp.total()
        self.placement = placement
        self.service_latency = res.service_latency_ms
        self.t += 1
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        stepped = ~self._autoreset
        info: dict[str, Any] = {
            "reward_components": vars(comp),
            "latency_ms": res.latency_ms,
            "violations": res.violations,
            "unserved": res.unserved,
            "replicas": placement.sum(1),
            "changes": np.abs(placement - prev).sum(1),
            "rejected": rejected.astype(np.int64),
            "stable": np.ones(B, dtype=bool),
            "placement": placement.copy(),
        }
        for key in list(info):
            info[f"_{key}"] = stepped
        if not stepped.all():
            rows = np.flatnonzero(~stepped)
            self._reset_rows(rows, {})
            reward[rows] = 0.0
            truncated[rows] = False
            info.update(self._reset_info(rows))
        self._autoreset = truncated
        terminated = np.zeros(B, dtype=bool)
        return self._observe(), reward, terminated, truncated.copy(), info
