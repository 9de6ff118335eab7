"""Tabular Q-learning on a discretised state with a small set of candidate placement rules as actions.

State: (hour-of-day bucket, demand level of the busiest cell). The levels are quantiles of the busiest cell's
users per slot in the training traces, so the same table works on any scenario (overload starts in one cell, which
a city-wide total hides). Actions: ``static-k`` for every ``k`` from the largest slot maximum down to 1 (so the
all-zero initial table runs the most expensive static placement), and ``optimized-balance`` at a few target
utilisations (which carry the per-cell demand into the placement).
Each action is a full placement rule evaluated on the context, so every action is valid.

Upstream had a Q-learning agent over raw node metrics that never learned; this one learns in seconds.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.world import World
from policies.base import Context, PlacementPolicy
from policies.heuristics import OptimizedBalance, StaticK


class QLearningPolicy(PlacementPolicy):
    name = "q-learning"

    def __init__(
        self,
        hour_buckets: int = 6,
        demand_levels: int = 5,
        utilizations: tuple[float, ...] = (0.5, 0.7, 0.9),
        alpha: float = 0.02,
        gamma: float = 0.5,
        epsilon: tuple[float, float] = (1.0, 0.05),
    ):
        if not (24 % hour_buckets == 0 and demand_levels >= 1):
            raise ValueError(f"q-learning: hour_buckets must divide 24, got {hour_buckets}")
        self.hour_buckets, self.demand_levels = hour_buckets, demand_levels
        self.utilizations = utilizations
        self.alpha, self.gamma, self.epsilon = alpha, gamma, epsilon
        self.actions: list[PlacementPolicy] = []
        self.q = np.zeros((0, 0))
        self.edges = np.zeros(0)
        self.visits = np.zeros((0, 0), dtype=np.int64)
        self.slots_per_day = 1
        self.reward_scale = 1.0
        self._world: World | None = None

    # -- discretisation --------------------------------------------------------------------------------
    def setup(self, world: World, traces: list[int | str]) -> None:
        """Build the action set and demand levels for ``world`` (the table is reset to zeros)."""
        self._world = world
        kmax = int(world.slot_max.max())
        self.actions = [StaticK(k) for k in range(kmax, 0, -1)]
        self.actions += [OptimizedBalance(u) for u in self.utilizations]
        busiest = np.concatenate([world.demand.trace(t).max(1) for t in traces])
        qs = np.linspace(0, 1, self.demand_levels + 1)[1:-1]
        self.edges = np.quantile(busiest, qs) if len(qs) else np.zeros(0)
        self.slots_per_day = world.demand.slots_per_day
        self.q = np.zeros((self.hour_buckets * self.demand_levels, len(self.actions)))
        self.visits = np.zeros(self.q.shape, dtype=np.int64)

    def state(self, ctx: Context) -> int:
        hour = ctx.snapshot.slot * self.hour_buckets // self.slots_per_day
        level = int(np.searchsorted(self.edges, float(np.max(ctx.snapshot.users)), side="right"))
        return int(hour) * self.demand_levels + level

    def act(self, ctx: Context) -> np.ndarray:
        if self._world is None or ctx.world.scenario != self._world.scenario:
            raise ValueError("q-learning: policy was trained on another scenario; call train() or setup() first")
        return self.actions[int(np.argmax(self.q[self.state(ctx)]))].act(ctx)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "states": int(self.q.shape[0]),
            "actions": [a.describe() for a in self.actions],
            "alpha": self.alpha,
            "gamma": self.gamma,
        }

    # -- training ---------------------------------------------------------------------------------------
    def train(self, env: gym.Env, episodes: int, seed: int = 0) -> list[float]:
        """Epsilon-greedy Q-learning for ``episodes`` episodes of ``env``; returns the return of each episode.

        Epsilon decays linearly from ``epsilon[0]`` to ``epsilon[1]``; the step size is ``max(1/visits, alpha)``
        (sample averages first, then a constant rate); rewards are divided by the magnitude of the first step's
        reward so that the table means the same on every scenario. The low default ``gamma`` reflects that an
        action sets the whole placement, so the next state barely depends on it.
        """
        if episodes < 1:
            raise ValueError(f"q-learning: episodes must be >= 1, got {episodes}")
        inner = env.unwrapped
        self.setup(inner.world, list(inner.traces))  # type: ignore[attr-defined]
        rng = np.random.default_rng(seed)
        horizon = (env.spec.max_episode_steps if env.spec else None) or inner.world.scenario.episode_slots  # type: ignore[attr-defined]
        returns = []
        scale = 0.0
        for ep in range(episodes):
            eps = self.epsilon[0] + (self.epsilon[1] - self.epsilon[0]) * ep / max(1, episodes - 1)
            env.reset(seed=seed * 100_003 + ep)
            ctx = Context.from_env(env)
            s, total, t = self.state(ctx), 0.0, 0
            while True:
                a = int(rng.integers(len(self.actions))) if rng.random() < eps else int(np.argmax(self.q[s]))
                _, rew, term, trunc, _ = env.step(self.actions[a].act(ctx))
                r = float(rew)
                total += r
                t += 1
                scale = scale or max(abs(r), 1e-6)
                ctx = Context.from_env(env)
                s2 = self.state(ctx)
                done = term or trunc or t >= horizon
                target = r / scale + (0.0 if term else self.gamma * self.q[s2].max())
                self.visits[s, a] += 1
                step = max(1.0 / self.visits[s, a], self.alpha)
                self.q[s, a] += step * (target - self.q[s, a])
                s = s2
                if done:
                    break
            returns.append(total)
        self.reward_scale = scale
        return returns
