"""Progress of long work: a bar on a terminal, two structured log lines anywhere else."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pty
import select
import struct
import sys
import termios

import pytest

from registry_sync.logs import JsonFormatter
from registry_sync.progress import progress


def test_off_a_terminal_it_logs_start_and_end_with_the_size_and_duration(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a TTY
    caplog.set_level(logging.INFO, "stageserve.progress")
    with progress("verify cost package", 3 * 1024 * 1024, model="cost") as advance:
        for _ in range(3):
            advance(1024 * 1024)
    start, end = caplog.records
    assert start.getMessage() == "verify cost package: started (3.0 MiB)"
    assert end.getMessage().startswith("verify cost package: done, 3.0 MiB in ")
    fields = json.loads(JsonFormatter().format(end))
    assert fields["event"] == "done" and fields["model"] == "cost"
    assert fields["bytes"] == 3 * 1024 * 1024 and fields["duration_s"] >= 0
    drawn = sys.stderr.getvalue()  # type: ignore[attr-defined]
    assert "%|" not in drawn and "B/s" not in drawn  # no bar drawn


def test_a_count_of_things_is_logged_in_its_own_unit_not_as_bytes(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a TTY
    caplog.set_level(logging.INFO, "stageserve.progress")
    with progress("report: plots", 3, unit="models") as advance:
        for _ in range(3):
            advance(1)
    start, end = (json.loads(JsonFormatter().format(r)) for r in caplog.records)
    assert start["message"] == "report: plots: started (3 models)" and start["total"] == 3
    assert end["models"] == 3 and "bytes" not in end and "total_bytes" not in start


def test_work_that_fails_is_logged_as_failed_with_what_was_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "stageserve.progress")
    with pytest.raises(OSError), progress("fetch cost v1", None) as advance:
        advance(10)
        raise OSError("disk full")
    assert caplog.records[0].getMessage() == "fetch cost v1: started"
    assert caplog.records[-1].getMessage().startswith("fetch cost v1: failed, 10 B in ")


def test_on_a_terminal_it_draws_a_bar_and_logs_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STAGESERVE_NO_PROGRESS", raising=False)
    caplog.set_level(logging.INFO, "stageserve.progress")
    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 columns wide (tqdm would draw nothing): make it 100 x 30.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        with open(follower, "w", closefd=False) as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            with progress("verify cost package", 2048) as advance:
                advance(1024)
                advance(1024)
            terminal.flush()
        ready, _, _ = select.select([leader], [], [], 5)  # never block the suite
        drawn = os.read(leader, 65536).decode(errors="replace") if ready else ""
    finally:
        os.close(leader)
        os.close(follower)
    # The bar counts bytes (2 KiB total, a B/s rate), then clears itself (leave=False).
    assert "verify cost package:" in drawn and "/2.00k" in drawn and "B/s" in drawn
    assert caplog.records == []


def test_neither_the_gateway_nor_the_sync_imports_tqdm() -> None:
    import subprocess

    code = (
        "import sys, gateway.app, gateway.serve_cli, gateway.cli, registry_sync.sync.cli, "
        "registry_sync.sync.materialize, registry_sync.registry.writer, registry_sync.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tqdm'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
