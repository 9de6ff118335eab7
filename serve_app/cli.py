"""The ``lwmecps`` command line.

Every subcommand is a module in :mod:`serve_app.commands` listed in :data:`COMMANDS`; adding one means dropping a
module there (see that package's docstring for the contract) and adding its name below.

Bad input of any kind (unknown preset, unreadable or invalid scenario file, an out-of-range option, a malformed
argument) ends with exactly one line ``error: <message>`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from envs.scenario import ScenarioError
from serve_app.commands import UsageError

#: Subcommand modules under ``serve_app.commands``, in the order ``lwmecps --help`` lists them.
COMMANDS: tuple[str, ...] = ("scenario", "plot", "evaluate", "demo", "serve", "backup")

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become one ``error:`` line instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lwmecps", description="lwmecps-gym: RL placement and scaling of services on MEC clusters")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"serve_app.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except (ScenarioError, ValueError, OSError, UsageError) as err:
        message = str(err).strip().splitlines() or [type(err).__name__]
        print(f"error: {message[0]}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
