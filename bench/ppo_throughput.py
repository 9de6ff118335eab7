"""Env steps/s during RLlib PPO training on 2 cores: the twin and the reference city beside CartPole-v1.

    .venv/bin/python bench/ppo_throughput.py --iters 5

Every row builds PPO with the same training settings (the ``testapp-ppo`` preset's hyperparameters over the
builder defaults) and the same env-runner layout, runs one warm-up iteration (env and numba warm-up, first torch
calls), then ``--iters`` timed iterations; steps/s = env steps sampled / wall time of the timed iterations
(sampling and learning together, as in training). ``sample`` and ``learn`` are RLlib's smoothed per-iteration
timers. CartPole uses RLlib's default (unmasked) PPO module with the same network. Writes the ``ppo-throughput``
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from learning import load_avg, machine, ray_init, write_section

from policies.rllib.configs import _DEFAULTS, _MODEL_DEFAULTS, algorithm_config
from tune_configs.preset import CITY_TRAIN, REFCITY, TESTAPP, TESTAPP_TRAIN
from tune_configs.testapp_ppo import PRESET

#: (env, num_env_runners, num_envs_per_env_runner, module); the first four rows are the learning benches' layout
SHARED, MLP = "slot-shared", "mlp"
LAYOUTS = [("CartPole-v1", 0, 16, MLP), (TESTAPP, 0, 16, SHARED), (REFCITY, 0, 16, SHARED), (REFCITY, 0, 16, MLP)]
LAYOUTS += [("CartPole-v1", 0, 4, MLP), (TESTAPP, 0, 4, SHARED), ("CartPole-v1", 1, 16, MLP), (TESTAPP, 1, 16, SHARED)]
LAYOUTS += [(REFCITY, 1, 16, SHARED)]


def build(env: str, runners: int, num_envs: int, hparams: dict[str, Any]) -> Any:
    if env == "CartPole-v1":
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        settings = _DEFAULTS["PPO"] | {k: v for k, v in hparams.items() if k != "module"}
        model = {k: settings.pop(k) for k in list(settings) if k in ("fcnet_hiddens", "fcnet_activation")}
        cfg = (
            PPOConfig()
            .environment("CartPole-v1")
            .env_runners(num_env_runners=runners, num_envs_per_env_runner=num_envs)
            .rl_module(model_config=DefaultModelConfig(**(_MODEL_DEFAULTS | model)))
            .training(**settings)
        )
    else:
        env_config = TESTAPP_TRAIN if env == TESTAPP else CITY_TRAIN
        cfg = algorithm_config(
            "PPO", env, env_config, hparams, num_env_runners=runners, num_envs_per_env_runner=num_envs
        )
    return cfg.build_algo()


def measure(env: str, runners: int, num_envs: int, module: str, iters: int, hparams: dict[str, Any]) -> dict[str, Any]:
    algo = build(env, runners, num_envs, hparams | {"module": module})
    try:
        algo.train()  # warm-up
        start_steps = _steps(algo.train())
        t0 = time.perf_counter()
        for _ in range(iters):
            last = algo.train()
        wall = time.perf_counter() - t0
        steps = _steps(last) - start_steps
        timers = last.get("timers", {})
        return {
            "env": env,
            "module": "RLlib default" if env == "CartPole-v1" else module,
            "runners": runners,
            "num_envs": num_envs,
            "steps": steps,
            "seconds": wall,
            "sps": steps / wall,
            "sample": float(timers.get("env_runner_sampling_timer", float("nan"))),
            "learn": float(timers.get("learner_update_timer", float("nan"))),
        }
    finally:
        algo.stop()


def _steps(result: dict[str, Any]) -> float:
    return float(result["env_runners"]["num_env_steps_sampled_lifetime"])


def table(rows: list[dict[str, Any]]) -> str:
    cart = {(r["runners"], r["num_envs"]): r["sps"] for r in rows if r["env"] == "CartPole-v1"}
    out = [
        "| env | module | remote runners | envs per runner | env steps | seconds | steps/s | vs CartPole "
        "| sample s/iter | learn s/iter |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ref = cart.get((r["runners"], r["num_envs"]))
        rel = f"{r['sps'] / ref:.2f}" if ref else "n/a"
        out.append(
            f"| {r['env']} | {r['module']} | {r['runners']} | {r['num_envs']} | {r['steps']:,.0f} | "
            f"{r['seconds']:.1f} | "
            f"{r['sps']:,.0f} | {rel} | {r['sample']:.2f} | {r['learn']:.2f} |"
        )
    return "\n".join(out)


NOTES = """\
Where the time goes: with remote runners 0 the driver samples and learns in turn. The twin samples about as fast
as CartPole (RLlib's per-step connector pipeline dominates; the env itself does ~15 k steps/s). On the reference
city the `mlp` row is RLlib's default module: its 250 sub-actions give `TorchMultiCategorical` 250 `Categorical`
objects per batch (log-probabilities, entropies and KL in Python loops). The `slot-shared` module samples from
one `Categorical` over a `(B, 250, 4)` logits tensor (`policies/rllib/slot_dist.py`): its sampling phase is about
2x faster. Its learning phase is slower, because its two MLPs (policy and value) run once per slot: 4,000 x 250
rows per epoch, 10 epochs with these settings. Sharing a trunk between policy and value, fewer epochs
(`refcity-ppo` uses 6) or remote env runners on a cluster are the levers; none is measured here.
On a loaded machine (see the load average) all rows scale down together; the ratios are the useful part."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5, help="timed iterations per row")
    ap.add_argument("--quick", action="store_true", help="only the first four rows (the learning benches' layout)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    hparams = dict(PRESET.hparams)
    ray_init()
    t0 = time.time()
    rows = []
    for env, runners, num_envs, module in LAYOUTS[:4] if args.quick else LAYOUTS:
        rows.append(measure(env, runners, num_envs, module, args.iters, hparams))
        r = rows[-1]
        print(
            f"{env:28s} {module:11s} runners {runners} envs {num_envs:2d}: {r['sps']:7,.0f} steps/s "
            f"({r['steps']:,.0f} in {r['seconds']:.1f} s)",
            flush=True,
        )
    block = "\n\n".join(
        [
            "## PPO training throughput",
            f"`.venv/bin/python bench/ppo_throughput.py --iters {args.iters}{' --quick' if args.quick else ''}` "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {(time.time() - t0) / 60:.0f} min). "
            f"{machine()}; load average at the end {load_avg()} (1 / 5 / 15 min), shared with other jobs.",
            f"Same PPO settings in every row: `{_DEFAULTS['PPO'] | hparams}`, model "
            f"`{_MODEL_DEFAULTS | {k: v for k, v in hparams.items() if k.startswith('fcnet')}}`. One warm-up "
            f"iteration, then {args.iters} timed iterations; steps/s counts sampling and learning together. "
            "`remote runners` 0 = sampling in the driver process; 1 = one EnvRunner actor (sampling and learning "
            "then overlap only across iterations, not within one: RLlib's PPO samples, then learns).",
            table(rows),
            NOTES,
        ]
    )
    print(block)
    if not args.no_write:
        write_section("ppo-throughput", block)


if __name__ == "__main__":
    main()
