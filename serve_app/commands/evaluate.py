"""``lwmecps evaluate``: any mix of trained policies, baselines and the optimum, over seeds, with held-out demand.

``--policy`` (repeatable) takes a baseline name (``static-1`` .. ``static-4``, ``greedy-latency``,
``optimized-balance``, ``random``), ``optimum``, ``checkpoint:<dir>`` (an RLlib checkpoint) or ``export:<dir>`` (a
framework-neutral export), optionally labelled ``label=<spec>``. ``--cluster <file.yaml>`` runs every rollout on a
Kubernetes cluster instead of the simulator (see docs/kubernetes.md for the file's keys).
Writes ``results.md``, ``results.json`` and ``latency_over_day.png`` (and ``learning_curves.png`` for every
``--learning-curve label=<progress.csv>``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serve_app.commands import UsageError
from serve_app.commands.common import SCENARIO_HELP, load_world, progress

BASELINE_NAMES = ("static-1", "static-2", "static-3", "static-4", "greedy-latency", "optimized-balance", "random")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="compare policies (checkpoints, exports, baselines, optimum) over seeds")
    p.add_argument("--scenario", required=True, help=SCENARIO_HELP)
    p.add_argument("--policy", action="append", required=True, metavar="[LABEL=]SPEC",
                   help="baseline name, 'optimum', 'checkpoint:<dir>' or 'export:<dir>' (repeatable)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=5, help="evaluation seeds (default 5, the issue's minimum)")
    p.add_argument("--hours", type=float, default=24.0, help="hours per rollout (default: the whole day)")
    p.add_argument("--start-hour", type=float, default=0.0, help="hour of day the rollouts start (default 0)")
    p.add_argument("--trace", action="append", help="demand trace keys (default: held-out traces)")
    p.add_argument("--optimum-time-limit", type=float, default=10.0, help="MILP time limit per slot (s)")
    p.add_argument("--learning-curve", action="append", default=[], metavar="LABEL=CSV",
                   help="a Tune/RLlib progress.csv to plot (repeatable)")  # fmt: skip
    p.add_argument("--cluster", help="YAML with the cluster backend's settings: evaluate on a real cluster")
    p.add_argument("--out", default="out/evaluate", help="output folder (default out/evaluate)")
    p.set_defaults(func=run)


def make_policy(spec: str, optimum_time_limit: float) -> Any:
    """A PlacementPolicy from a ``--policy`` spec (without its label)."""
    from policies.heuristics import baselines
    from policies.optimum import OptimumPolicy

    kind, _, arg = spec.partition(":")
    if kind == "optimum" and not arg:
        return OptimumPolicy(time_limit=optimum_time_limit)
    if kind in ("checkpoint", "export"):
        path = Path(arg)
        if not path.is_dir():
            raise UsageError(f"--policy {spec}: no such directory {arg!r}")
        from policies.rllib.policy import RLlibPolicy

        return RLlibPolicy.from_checkpoint(path) if kind == "checkpoint" else RLlibPolicy.from_export(path)
    if spec in BASELINE_NAMES:
        return baselines((spec,))[spec]
    known = ", ".join([*BASELINE_NAMES, "optimum", "checkpoint:<dir>", "export:<dir>"])
    raise UsageError(f"--policy: unknown policy {spec!r} (known: {known})")


def _policies(specs: list[str], optimum_time_limit: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in specs:
        label, sep, spec = raw.partition("=")
        if not sep:
            label, spec = raw.split(":", 1)[0] if ":" in raw else raw, raw
        if label in out:
            raise UsageError(f"--policy: label {label!r} given twice (use label=spec)")
        out[label] = make_policy(spec, optimum_time_limit)
    return out


def cluster_backend(path: str) -> Callable[[Any], Any]:
    """A backend factory from the ``--cluster`` YAML (keys: kubeconfig, context, testapp_url, group_id,
    experiments {id: [service, station]}, and any ClusterConfig field such as namespace, dry_run, image)."""
    import yaml

    from envs.backends.k8s_plan import ClusterConfig
    from envs.backends.kubernetes import KubernetesBackend
    from envs.backends.testapp_client import TestAppClient, TestAppLatency

    try:
        spec = dict(yaml.safe_load(Path(path).read_text()) or {})
        latency_keys = {k: spec.pop(k) for k in ("testapp_url", "group_id", "experiments")}
    except KeyError as err:
        raise UsageError(f"--cluster {path}: missing key {err.args[0]!r}") from None
    kubeconfig, context = spec.pop("kubeconfig", None), spec.pop("context", None)
    config = ClusterConfig(**spec)

    def factory(world: Any) -> Any:
        client = TestAppClient(latency_keys["testapp_url"])
        exps = {k: tuple(v) for k, v in latency_keys["experiments"].items()}
        latency = TestAppLatency(client, latency_keys["group_id"], exps)
        return KubernetesBackend(world, latency, config, kubeconfig=kubeconfig, context=context)

    return factory


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise UsageError(f"--seeds: need at least 1, got {args.seeds}")
    if not 0 < args.hours <= 24:
        raise UsageError(f"--hours: must be in (0, 24], got {args.hours}")
    if not 0 <= args.start_hour < 24:
        raise UsageError(f"--start-hour: must be in [0, 24), got {args.start_hour}")
    curves = {}
    for item in args.learning_curve:
        label, sep, csv = item.partition("=")
        if not sep or not Path(csv).is_file():
            raise UsageError(f"--learning-curve: expected LABEL=<existing progress.csv>, got {item!r}")
        curves[label] = csv
    world = load_world(args.scenario)
    policies = _policies(args.policy, args.optimum_time_limit)
    backend = cluster_backend(args.cluster) if args.cluster else None
    from policies.evaluate import evaluate
    from policies.report import markdown_table, plot_latency_over_day, plot_learning_curves, terminal_table

    per_hour = 3600 // world.scenario.demand.slot_seconds
    steps, start = max(1, int(args.hours * per_hour)), int(args.start_hour * per_hour)
    progress(f"evaluating {', '.join(policies)} on {world.scenario.name}: {args.seeds} seeds x {steps} slots")
    result = evaluate(policies, world, seeds=args.seeds, traces=args.trace, steps=steps, start_slot=start,
                      progress=lambda m: print(f"  {m}", flush=True), backend=backend)  # fmt: skip
    print(terminal_table(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown_table(result) + "\n")
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2, default=float))
    plot_latency_over_day(result, out / "latency_over_day.png")
    if curves:
        plot_learning_curves(curves, out / "learning_curves.png")
    print(f"done: {out.resolve()} (results.md, results.json, latency_over_day.png)")
    return 0
