"""``lwmecps demo``: the short end-to-end demo on embedded defaults (not available yet)."""

from __future__ import annotations

import argparse

from serve_app.commands import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="short end-to-end demo: train briefly, evaluate against baselines, plot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise UsageError("'lwmecps demo' is not available yet")
