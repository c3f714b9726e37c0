"""Sub-commands of `stageserve` (being written; see gateway/cli.py for how they plug in)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    """Add this module's sub-commands to the `stageserve` parser's sub-parsers."""
    del sub


def _unused(args: argparse.Namespace) -> int:
    return 0
