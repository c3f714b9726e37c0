"""The history commands: `stageserve replay`, `stageserve report`, `stageserve feedback`."""

from __future__ import annotations

from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    from gateway.history.replay_cli import add_replay

    add_replay(sub)
