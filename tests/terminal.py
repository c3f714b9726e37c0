"""Run a command with its stderr on a pseudo-terminal, as a person at a terminal would, and
keep what it drew there (progress bars)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["run_on_a_terminal"]


def run_on_a_terminal(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60,
) -> tuple[subprocess.CompletedProcess[str], str]:
    """(the finished command with its stdout, what it drew on the terminal)."""
    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 columns wide (tqdm would draw nothing): make it 120 x 30.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        drawn = ""
        while select.select([leader], [], [], 0.5)[0]:
            drawn += os.read(leader, 65536).decode(errors="replace")
    finally:
        os.close(leader)
        os.close(follower)
    return done, drawn
