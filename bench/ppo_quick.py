"""A first learning check (not a test): PPO on the upstream twin, then greedy evaluation against static baselines.

    WANDB_MODE=disabled RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 \
        .venv/bin/python bench/ppo_quick.py --minutes 5 --seeds 5

Trains on profile A (``traces=["A"]``), evaluates every policy on profiles A and B over the same seeds (same start
slots), one episode (``max_episode_steps`` slots) per seed, and prints mean episode return with a 95 % interval.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import gymnasium as gym
import numpy as np
from scipy import stats

import envs  # noqa: F401 - registers the ids
from policies.base import Context, PlacementPolicy
from policies.heuristics import baselines

ENV_ID = "lwmecps/TestApp4BS-v0"
BASELINES = ("static-1", "static-2", "static-3", "static-4", "optimized-balance", "random")


class InitialPlacement(PlacementPolicy):
    """Keeps the env's initial placement (one replica on every slot that fits): never changes anything."""

    name = "initial-placement"

    def act(self, ctx: Context) -> np.ndarray:
        return ctx.snapshot.placement.copy()


def evaluate(policy: PlacementPolicy, trace: str, seeds: int) -> dict[str, float]:
    returns, latency, replicas = [], [], []
    for seed in range(seeds):
        env = gym.make(ENV_ID, traces=[trace])
        env.reset(seed=1000 + seed)
        policy.reset(env.unwrapped.world, seed=seed)  # type: ignore[attr-defined]
        total, lat, rep, done = 0.0, [], [], False
        while not done:
            _, reward, terminated, truncated, info = env.step(policy.act(Context.from_env(env)))
            total += reward
            lat.append(info["latency_ms"])
            rep.append(info["replicas"])
            done = terminated or truncated
        returns.append(total)
        latency.append(float(np.mean(lat)))
        replicas.append(float(np.mean(rep)))
    half = stats.t.ppf(0.975, seeds - 1) * np.std(returns, ddof=1) / np.sqrt(seeds) if seeds > 1 else float("nan")
    return {
        "return": float(np.mean(returns)),
        "ci": float(half),
        "latency_ms": float(np.mean(latency)),
        "replicas": float(np.mean(replicas)),
    }


def train(minutes: float, seed: int, checkpoint_dir: str) -> list[tuple[int, float, float]]:
    import ray

    from policies.rllib.configs import algorithm_config

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False
    )
    cfg = algorithm_config(
        "PPO",
        ENV_ID,
        {"traces": ["A"]},
        {"gamma": 0.95, "lr": 3e-4, "train_batch_size": 4000, "minibatch_size": 256, "num_epochs": 10},
        num_env_runners=0,
        num_envs_per_env_runner=4,
        seed=seed,
    )
    algo = cfg.build_algo()
    curve = []
    start = time.time()
    try:
        while time.time() - start < minutes * 60:
            r = algo.train()
            steps = int(r["env_runners"]["num_env_steps_sampled_lifetime"])
            ret = float(r["env_runners"].get("episode_return_mean", float("nan")))
            curve.append((steps, time.time() - start, ret))
            print(f"iter {len(curve):3d}  steps {steps:7d}  {time.time() - start:6.0f} s  episode return {ret:9.1f}")
        algo.save(checkpoint_dir)
    finally:
        algo.stop()
        ray.shutdown()
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from policies.rllib.policy import RLlibPolicy

    ckpt = tempfile.mkdtemp(prefix="ppo_quick_")
    curve = train(args.minutes, args.seed, ckpt)
    steps, secs = curve[-1][0], curve[-1][1]
    print(f"\ntrained {len(curve)} iterations, {steps} env steps in {secs:.0f} s ({steps / secs:.0f} steps/s)")
    print(f"checkpoint: {ckpt}\n")
    policies: dict[str, PlacementPolicy] = {"ppo": RLlibPolicy.from_checkpoint(ckpt)}
    policies["initial-placement"] = InitialPlacement()
    policies |= baselines(BASELINES)
    print(f"| policy | trace | episode return (95 % CI, {args.seeds} seeds) | mean latency ms | mean replicas |")
    print("|---|---|---|---|---|")
    for trace in ("A", "B"):
        for name, policy in policies.items():
            r = evaluate(policy, trace, args.seeds)
            ret = f"{r['return']:.1f} ± {r['ci']:.1f}"
            print(f"| {name} | {trace} | {ret} | {r['latency_ms']:.1f} | {r['replicas']:.2f} |")


if __name__ == "__main__":
    main()
