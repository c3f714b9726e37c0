"""The history commands: `stageserve replay`, `stageserve report`, `stageserve feedback`."""

from __future__ import annotations

from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    from gateway.history.feedback_cli import add_feedback
    from gateway.history.replay_cli import add_replay
    from gateway.history.report_cli import add_report

    add_replay(sub)
    add_report(sub)
    add_feedback(sub)
