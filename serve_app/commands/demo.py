"""``lwmecps demo``: train PPO briefly on the upstream twin, evaluate it against the baselines, write plots.

Everything runs on embedded defaults: a local Ray runtime, the simulated city, W&B off. Output (``--out``):
``results.md`` (the table), ``learning_curve.png``, ``latency_over_day.png``, ``city.png`` (the trained policy's
placement at the peak), ``checkpoint/`` and ``export/`` (the trained policy).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from serve_app.commands import UsageError
from serve_app.commands.common import progress

ENV_ID = "lwmecps/TestApp4BS-v0"
TRAIN = {"traces": ["A"]}
BASELINES = ("static-1", "static-2", "static-3", "static-4", "greedy-latency", "optimized-balance", "random")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="short end-to-end demo: train briefly, evaluate against baselines, plot")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--train-seconds", type=float, default=150.0, help="PPO training budget (default: 150)")
    p.add_argument("--eval-hours", type=float, default=4.0, help="held-out hours to evaluate, from 18:00 (default 4)")
    p.add_argument("--seeds", type=int, default=3, help="evaluation seeds (default 3)")
    p.set_defaults(func=run)


def _train(seconds: float, out: Path) -> tuple[Path, list[tuple[float, float]]]:
    import ray

    from policies.rllib.configs import algorithm_config

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("WANDB_MODE", "disabled")
    progress("starting a local Ray runtime")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=300 * 1024**2)  # fmt: skip
    algo = algorithm_config("PPO", ENV_ID, TRAIN, seed=0).build_algo()
    curve: list[tuple[float, float]] = []
    try:
        start = time.monotonic()
        progress(f"training PPO on {ENV_ID} (profile A) for {seconds:.0f} s")
        while time.monotonic() - start < seconds:
            result = algo.train()
            steps = float(result.get("num_env_steps_sampled_lifetime", 0))
            ret = result.get("env_runners", {}).get("episode_return_mean")
            if ret is not None:
                curve.append((steps, float(ret)))
            shown = "-" if ret is None else f"{ret:.1f}"
            print(f"  iter {result['training_iteration']:3d}  steps {steps:8.0f}  return {shown:>8}  "
                  f"elapsed {time.monotonic() - start:5.0f}s", flush=True)  # fmt: skip
        saved = algo.save(str((out / "checkpoint").resolve())).checkpoint
        assert saved is not None
        checkpoint = Path(saved.path)
    finally:
        algo.stop()
        ray.shutdown()
    return checkpoint, curve


def run(args: argparse.Namespace) -> int:
    if args.train_seconds <= 0:
        raise UsageError(f"--train-seconds: must be > 0, got {args.train_seconds}")
    if not 0 < args.eval_hours <= 24:
        raise UsageError(f"--eval-hours: must be in (0, 24], got {args.eval_hours}")
    if args.seeds < 1:
        raise UsageError(f"--seeds: need at least 1, got {args.seeds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, curve = _train(args.train_seconds, out)

    from policies.evaluate import evaluate
    from policies.heuristics import baselines
    from policies.report import markdown_table, plot_latency_over_day, plot_learning_curves, terminal_table
    from policies.rllib.export import export_checkpoint
    from policies.rllib.policy import RLlibPolicy

    export_checkpoint(checkpoint, out / "export")
    ppo = RLlibPolicy.from_checkpoint(checkpoint)
    policies = {"ppo": ppo, **baselines(BASELINES)}
    steps = int(args.eval_hours * 360)
    progress(f"evaluating {len(policies)} policies on held-out profile B, {args.eval_hours:g} h from 18:00")
    result = evaluate(policies, ENV_ID, seeds=args.seeds, traces=["B"], steps=steps, start_slot=18 * 360,
                      progress=lambda m: print(f"  {m}", flush=True))  # fmt: skip
    print(terminal_table(result))
    (out / "results.md").write_text(markdown_table(result) + "\n")
    progress("drawing plots")
    if curve:
        plot_learning_curves({"PPO": ([c[0] for c in curve], [c[1] for c in curve])}, out / "learning_curve.png")
    plot_latency_over_day(result, out / "latency_over_day.png")
    _city(ppo, out / "city.png")
    print(f"done: results in {out.resolve()} (results.md, *.png, checkpoint/, export/)")
    return 0


def _city(policy: object, path: Path) -> None:
    import gymnasium as gym
    import numpy as np

    from policies.base import Context, PlacementPolicy
    from serve_app.plots_city import draw_city

    assert isinstance(policy, PlacementPolicy)
    env = gym.make(ENV_ID, traces=["B"])
    env.reset(seed=0, options={"start_slot": 21 * 360})
    for _ in range(30):  # let the policy settle into the peak hour
        ctx = Context.from_env(env)
        _, _, _, _, info = env.step(policy.act(ctx))
    ctx = Context.from_env(env)
    world = ctx.world
    title = f"trained PPO at 21:05 on profile B: {int(info['placement'].sum())} replicas, {info['latency_ms']:.2f} ms"
    fig = draw_city(world, np.asarray(ctx.snapshot.users), np.asarray(info["placement"]), title)
    fig.savefig(path, dpi=110)
    env.close()
