"""The command line shared by every preset: ``python -m tune_configs.<module> [options]`` or
``python -m tune_configs <preset> [options]``. Exit codes: 0 success, 1 some trial failed, 2 bad input."""

from __future__ import annotations

import argparse
import ast
import json
from typing import Any, NoReturn

from tune_configs import PRESETS, PresetError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_value(text: str) -> Any:
    """JSON (``true``, ``3e-4``, ``[64, 64]``), else a Python literal (``True``, ``None``), else the string."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            pass
    return text


def parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PresetError(f"--set {item!r}: expected key=value")
        out[key.strip()] = parse_value(value.strip())
    return out


def build_parser(preset: str | None) -> argparse.ArgumentParser:
    prog = f"python -m {PRESETS[preset]}" if preset in PRESETS else "python -m tune_configs"
    p = _Parser(prog=prog, description="Run a Ray Tune experiment preset (progress: one line per iteration).")
    if preset is None:
        p.add_argument("preset", help=f"preset name ({', '.join(PRESETS)})")
    p.add_argument("--stop-iters", type=int, help="stop each trial after N training iterations")
    p.add_argument("--stop-seconds", type=float, help="stop each trial after S seconds of training")
    p.add_argument("--stop-steps", type=int, help="stop each trial after N sampled env steps")
    p.add_argument("--storage", help="experiment storage: a local dir or a cloud URI (default ./runs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    p.add_argument("--num-samples", type=int, default=1, help="trials per search point, seeds SEED, SEED+1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wandb", choices=["offline", "online", "disabled"], help="default: $WANDB_MODE, else offline")
    p.add_argument("--env-runners", type=int, default=0, help="remote env runners per trial (0: sample in-trial)")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N iterations (and always at the end)")
    p.add_argument("--resume", action="store_true", help="continue an existing run of the same name")
    return p


def _stop(args: argparse.Namespace) -> dict[str, float]:
    pairs = [
        ("training_iteration", args.stop_iters),
        ("time_total_s", args.stop_seconds),
        ("num_env_steps_sampled_lifetime", args.stop_steps),
    ]
    return {key: value for key, value in pairs if value is not None}


def main(argv: list[str] | None = None, preset: str | None = None) -> int:
    parser = build_parser(preset)
    args = parser.parse_args(argv)
    name = preset or args.preset
    try:
        from tune_configs.run import run

        summary = run(
            name,
            storage_path=args.storage,
            overrides=parse_sets(args.set),
            stop=_stop(args),
            num_samples=args.num_samples,
            seed=args.seed,
            wandb=args.wandb,
            num_env_runners=args.env_runners,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
        )
    except PresetError as e:
        parser.error(str(e))
    best = summary["best"] or {}
    print(f"run {summary['name']}: {summary['num_trials']} trial(s), {summary['num_errors']} failed")
    print(f"best: {json.dumps(best.get('metrics'))} checkpoint: {best.get('checkpoint')}")
    print(f"summary: {summary['experiment_path']}/summary.json")
    return 1 if summary["num_errors"] else 0
