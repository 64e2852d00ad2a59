"""argparse types and option groups the subcommands share (``boundprop audit``, ``verify``,
``lipschitz``, ``run``): a bad value is a one-line usage error, exit 2."""

from __future__ import annotations

import argparse


def count_type(limit: int | None):
    """An argparse type: an integer in [0, limit] (one-line usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text[:40]}' is not an integer") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"'{text[:40]}' must be ≥ 0")
        if limit is not None and v > limit:
            raise argparse.ArgumentTypeError(f"'{text[:40]}' is over the limit {limit:,}")
        return v
    return parse


def add_progress_args(p: argparse.ArgumentParser, quiet_help: str) -> None:
    """``--progress`` (status on stderr even when it is not a terminal) and ``--quiet``."""
    p.add_argument("--progress", action="store_true",
                   help="status lines on stderr even when it is not a terminal")
    p.add_argument("--quiet", action="store_true", help=quiet_help)
