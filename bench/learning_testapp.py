"""Learning on the upstream twin: PPO trained on profile A beats every upstream baseline on A and held-out B.

    .venv/bin/python bench/learning_testapp.py --minutes 5 --seeds 5 --parallel 2 --mlp-seeds 2

Trains one PPO policy per seed (``tune_configs.testapp_ppo``: the slot-shared module; profile A only, 360-slot
episodes from random start slots), ``--parallel`` processes at a time, each for ``--minutes`` of wall time, and
``--mlp-seeds`` policies with RLlib's default network (one head per station) on the same budget for
comparison; then evaluates every
policy greedily over the whole day (8,640 slots of 10 s from 00:00) on profile A and on profile B, seed ``s``
with the policy of training seed ``s``. Baselines and the optimum are deterministic on the twin (recorded
profiles, no noise), so their intervals are 0 except uniform random's. Writes the ``learning-testapp`` section of
``docs/benchmarks.md`` and ``docs/img/learning_testapp_*.png``. ``--skip-train`` reuses ``runs/learning/testapp*``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from learning import (
    IMG,
    RUNS,
    curves,
    load_avg,
    load_ppo,
    machine,
    ray_init,
    run_parallel,
    train_ppo,
    training_records,
    versus,
    write_section,
)

from envs.presets import get_scenario
from envs.world import build_world
from policies.base import PlacementPolicy
from policies.evaluate import EvalResult, evaluate
from policies.heuristics import baselines
from policies.optimum import OptimumPolicy
from policies.report import markdown_table, plot_latency_over_day, plot_learning_curves, terminal_table
from tune_configs.preset import TESTAPP, TESTAPP_TRAIN
from tune_configs.testapp_ppo import PRESET

RUN = RUNS / "testapp"
#: the comparison runs with RLlib's default network (hparam ``module="mlp"``: one action head per station)
MLP = RUNS / "testapp_mlp"
UPSTREAM = ("static-3", "static-4", "optimized-balance", "random")
COLUMNS = ("reward", "latency_mean", "latency_p95", "replicas", "changes", "decision_ms")
#: "no more latency": mean latencies within this many ms count as equal (the floor is 2.0 ms, see the doc)
LATENCY_TOL = 0.01


def scaled_profiles(out: Path, scales: list[float]) -> dict[str, Any]:
    """Env config that trains on profile A and copies of A with every count times ``scales`` (B stays held out).

    A cell of A has more than 30 users in 0.2-6 % of the slots, and the step from one to two replicas pays
    off between 30 and 40 users: a policy sees few such slots in A and can settle on a threshold near 40, which
    costs little on A and much on B (whose busy cells sit above 30 users two to three times as often). Scaled
    copies of A (rounded counts) put more slots in that range, with A's own daily shape and station mix."""
    if not scales:
        return dict(TESTAPP_TRAIN)
    users = build_world(get_scenario("testapp-4bs")).demand.trace("A")
    out.mkdir(parents=True, exist_ok=True)
    profiles = {"A": str(out / "profile_a.csv")}
    for f in scales:
        profiles[f"A-x{f:g}"] = str(out / f"profile_a_x{f:g}.csv")
    for key, path in profiles.items():
        f = 1.0 if key == "A" else float(key.removeprefix("A-x"))
        rows = np.rint(users * f).astype(np.int64)
        header = "slot," + ",".join(f"bs{i + 1}" for i in range(rows.shape[1]))
        table = np.column_stack([np.arange(len(rows)), rows])
        np.savetxt(path, table, fmt="%d", delimiter=",", header=header, comments="")
    scenario = get_scenario("testapp-4bs").model_dump()
    scenario["demand"] |= {"profiles": profiles, "default_profile": "A"}
    return {"scenario": scenario, "traces": list(profiles)}


def evaluate_profile(ppo: PlacementPolicy, profile: str, seeds: list[int], optimum: bool) -> EvalResult:
    """PPO and the baselines over every seed; the optimum (deterministic, ~1 min per day) on the first seed only."""
    pols: dict[str, PlacementPolicy] = {"ppo": ppo}
    pols |= baselines((*UPSTREAM, "static-2"))
    result = evaluate(pols, TESTAPP, seeds=seeds, traces=[profile], start_slot=0, progress=print)
    if optimum:
        opt = evaluate({"optimum": OptimumPolicy()}, TESTAPP, seeds=seeds[:1], traces=[profile], start_slot=0)
        result.rollouts += opt.rollouts
    mlp = sorted(int(p.name[4:]) for p in MLP.glob("seed*") if (p / "curve.json").exists())
    if mlp:
        ppo_mlp = load_ppo(MLP, mlp, "ppo (mlp heads)")
        more = evaluate({ppo_mlp.name: ppo_mlp}, TESTAPP, seeds=mlp, traces=[profile], start_slot=0)
        result.rollouts += more.rollouts
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", nargs="?", default="all", choices=("all", "train"))
    ap.add_argument("--minutes", type=float, default=6.0, help="training wall time per seed")
    ap.add_argument("--steps", type=float, default=300_000, help="env steps per seed (stops at --minutes first)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="train: the seed to train")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--mlp-seeds", type=int, default=2, help="seeds of the default-network comparison (0: none)")
    ap.add_argument("--mlp", action="store_true", help="train: RLlib's default network instead of the preset's")
    ap.add_argument("--scales", type=float, nargs="*", default=[], help="also train on A with counts times these")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--no-optimum", action="store_true", help="leave out the per-slot optimum (~1 min per seed)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.stage == "train":
        ray_init()
        hparams = dict(PRESET.hparams) | ({"module": "mlp"} if args.mlp else {})
        out = (MLP if args.mlp else RUN) / f"seed{args.seed}"
        env_config = scaled_profiles(out / "data", args.scales)
        train_ppo(TESTAPP, env_config, hparams, seconds=args.minutes * 60, steps=args.steps, seed=args.seed, out=out)
        return
    t0 = time.time()
    seeds = list(range(args.seeds))
    if not args.skip_train:
        me = [sys.executable, str(Path(__file__).resolve()), "train", "--minutes", str(args.minutes)]
        me += ["--steps", str(args.steps), "--scales", *map(str, args.scales)]
        jobs = [[*me, "--seed", str(s)] for s in seeds]
        jobs += [[*me, "--mlp", "--seed", str(s)] for s in range(args.mlp_seeds)]
        run_parallel(jobs, args.parallel, RUN / "logs")
    ppo = load_ppo(RUN, seeds)
    results = {p: evaluate_profile(ppo, p, seeds, not args.no_optimum) for p in ("A", "B")}
    for p, res in results.items():
        print(f"\nprofile {p}\n" + terminal_table(res, COLUMNS))
    block = report(args, results, seeds, time.time() - t0)
    print(block)
    if not args.no_write:
        write_section("learning-testapp", block)


def verdicts(results: dict[str, EvalResult]) -> str:
    rows = [
        "| profile | baseline | reward: PPO CI above baseline CI | Δ latency ms | Δ replicas "
        "| PPO dominates | PPO dominated |"
    ]
    rows.append("| --- | --- | --- | ---: | ---: | --- | --- |")
    for profile, res in results.items():
        s = res.summary()
        for b in UPSTREAM:
            v = versus(s["ppo"], s[b], LATENCY_TOL)
            yn = {True: "yes", False: "no"}
            rows.append(
                f"| {profile} | {b} | {yn[v['better_reward']]} | {v['dl']:+.3f} | {v['dr']:+.2f} | "
                f"{yn[v['dominates']]} | {yn[v['dominated']]} |"
            )
    met = {
        p: all(versus(r.summary()["ppo"], r.summary()[b], LATENCY_TOL)["better_reward"] for b in UPSTREAM)
        for p, r in results.items()
    }
    status = "; ".join(f"profile {p}: {'yes' if ok else 'no'}" for p, ok in met.items())
    return "\n".join(rows) + f"\n\nPPO's reward interval above every upstream baseline's: {status}."


def report(args: argparse.Namespace, results: dict[str, EvalResult], seeds: list[int], wall: float) -> str:
    recs = training_records(RUN, seeds)
    plot_learning_curves(
        curves(RUN, seeds), IMG / "learning_testapp_curves.png", title="PPO (slot-shared) on TestApp4BS-v0, profile A"
    )
    for p, res in results.items():
        plot_latency_over_day(res, IMG / f"learning_testapp_latency_{p}.png")
    steps, secs, cpu = ([r[k] for r in recs] for k in ("steps", "seconds", "cpu_s"))
    cmd = f"--minutes {args.minutes:g} --steps {args.steps:g} --seeds {args.seeds} --parallel {args.parallel}"
    cmd += f" --mlp-seeds {args.mlp_seeds}"
    data = "profile A only"
    if args.scales:
        factors = " ".join(f"{f:g}" for f in args.scales)
        cmd += f" --scales {factors}"
        data = f"profile A and copies of A with every count times {factors}"
        data += " (`scaled_profiles`; B is never seen)"
    lines = [
        "## Learning: upstream twin",
        f"`.venv/bin/python bench/learning_testapp.py {cmd}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {wall / 60:.0f} min in all). {machine()}; "
        f"load average at the end {load_avg()} (1 / 5 / 15 min); the machine was shared with other jobs.",
        f"PPO with the `testapp-ppo` preset (`{dict(PRESET.hparams)}` over the builder defaults; 16 envs sampled "
        f"in the driver, no remote runners), trained on {data}: 360-slot episodes from random start slots, so "
        f"episodes include the evening peak. {len(seeds)} independent training seeds, {args.parallel} at a time on "
        f"the 2 cores, each stopped at {args.steps:,.0f} env steps or {args.minutes:g} min: "
        f"{min(secs):.0f}-{max(secs):.0f} s wall ({min(cpu):.0f}-{max(cpu):.0f} CPU s), "
        f"{min(steps):,.0f}-{max(steps):,.0f} env steps per seed. Evaluation: seed s's policy greedily over the whole "
        "day (8,640 slots of 10 s from 00:00) on profile A and on profile B (never seen in training), mean ± 95 % "
        "t-interval over the seeds. The baselines and the per-slot optimum are deterministic on the twin (recorded "
        "profiles, no noise): their intervals are 0 (the optimum is run once: n/a).",
    ]
    for p, res in results.items():
        lines += [f"Profile {p}:", markdown_table(res, COLUMNS)]
    lines += [
        f"Against each upstream baseline (Δ = PPO − baseline; mean latencies within {LATENCY_TOL} ms count as "
        "equal, replicas compared exactly; 'dominates' = lower latency at no more replicas or fewer replicas at no "
        "more latency; 'dominated' = the baseline is at least as good on both and better on one):",
        verdicts(results),
        NOTES,
        "![learning curves](img/learning_testapp_curves.png)\n\n"
        "![latency A](img/learning_testapp_latency_A.png)\n\n![latency B](img/learning_testapp_latency_B.png)",
    ]
    return "\n\n".join(lines)


NOTES = """\
Notes (findings of the runs of 2026-11-28; the tables above are regenerated, these lines are not).
* Throttling state is hidden: a replica's load carries over between 10-s bursts, and the observation has users
  per cell and one mean latency for the service, not the counters. The per-slot optimum reads the counters; a
  policy cannot. Yet a simple observable rule, "two replicas where a cell has more than 30 users, else one",
  scores -20,834 on A and -20,902 on B (optimum -20,740 / -20,754): the target is reachable from the observation.
* `ppo (mlp heads)` is the same PPO with RLlib's default network (`module="mlp"`): one action head per station
  (when the command says `--mlp-seeds 0`, these rows are the policies of the previous run kept in
  `runs/learning/testapp_mlp`: 5 min each on profile A only, same hyperparameters).
  Near the optimum on A, about static-1 on B: A's busy station is bs1, B's are bs2 and bs3, and their heads
  never saw their own station busy. The slot-shared module (one network for every station, see
  docs/algorithms.md) removes that failure; an earlier attempt with station-rotated copies of A for the default
  network needed far more steps (γ 0.5, 300 k steps: -46,505 on B).
* Exploration: without an entropy bonus (`entropy_coeff` 0, RLlib's default) 2 of 5 seeds of a 5-minute run
  settled on adding the second replica only above ~40 users (seed 3: never below 34 users), which costs little
  on A (-21,432) and much on B (-32,145), whose busy cells sit between 30 and 40 users 2-3x as often; the
  5-seed result on B was -24,927 ± 5,506. With `entropy_coeff` 0.01 the same seed scored -20,763 / -21,263,
  and a 5-seed run (5 min each, profile A only, 13:02 UTC) gave A -20,833 ± 141 and B -22,899 ± 3,483: 4 of 5
  seeds within 10 % of the optimum on B, seed 1 adding its second replica late (B -27,755, 2.81 ms). Training
  on scaled copies of A as well (`--scales`, more slots between 30 and 40 users; B still never seen) and longer
  training (the bar allows 15 minutes) are the levers against such seeds; the command line above says which
  were used for the tables.
* `optimized-balance` runs fewer replicas (≈ 3.4) than one per station and pays with latency (≈ 3 ms); the
  static baselines sit on the 2.0 ms floor with 8-16 replicas. "Dominates" both at once needs the floor latency
  with ≤ 3.4 replicas, which no policy reaches: see the trade-off section (`bench/twin_frontier.py`). The
  verdicts above therefore show where PPO wins (reward, and against random on both axes) and that no baseline
  dominates it.
* Latency ties: the floor is 2.0 ms (local hop); static-2..4 sit exactly on it."""


if __name__ == "__main__":
    main()
