"""The ``lwmecps`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lwmecps", description="lwmecps-gym: RL placement for MEC clusters")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="short end-to-end demo on embedded defaults")
    args = parser.parse_args(argv)
    parser.error(f"command {args.command!r} is not implemented yet")
    return 2


if __name__ == "__main__":
    sys.exit(main())
