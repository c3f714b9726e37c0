"""The `stageserve` executable in a shell: a closed pipe ends quietly, a busy port is one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.integration.server import ROOT, write_state


def _tagged_registry(path: Path, tags: int) -> Path:
    """A registry with one version and `tags` assignments, written by one `git fast-import`."""
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    lines = [
        "commit refs/heads/main",
        "committer a <a@example.com> 1700000000 +0000",
        "data 1",
        "m",
        "M 644 inline models/m/model.onnx",
        "data 1",
        "x",
        "",
        "tag m@v0.0.1",
        "from refs/heads/main",
        "tagger a <a@example.com> 1700000000 +0000",
        "data 37",
        "Registering artifact m version v0.0.1",
    ]
    for n in range(1, tags + 1):
        message = "Assigning stage prod to artifact m version v0.0.1"
        lines += [
            f"tag m#prod#{n}",
            "from refs/heads/main",
            f"tagger a <a@example.com> {1700000000 + n} +0000",
            f"data {len(message)}",
            message,
        ]
    stream = ("\n".join(lines) + "\n").encode()
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=stream, check=True)
    return path


def test_output_cut_short_by_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    # More than a pipe's 64 KiB of history, read by `head`, which leaves after 100 bytes.
    registry = _tagged_registry(tmp_path / "registry", 400)
    done = subprocess.run(
        f"{sys.executable} -m gateway.cli registry history m --json --registry {registry}"
        " | head -c 100 > /dev/null; echo ${PIPESTATUS[0]}",
        shell=True, executable="/bin/bash", cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.stderr == ""
    assert done.stdout.strip() == "141"  # as a shell reports a process ended by SIGPIPE


def test_a_busy_port_fails_at_once_with_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    write_state(cache, [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port),
             "--cache", str(cache)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (is another server"
        " on that port? choose one with --port or STAGESERVE_PORT)"
    ]
