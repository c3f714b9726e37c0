"""Server processes for the harness: started pinned to a core, probed, measured, stopped.

CPU time is read from /proc (utime + stime of the server and every descendant: mlflow and
MLServer serve from child processes), so "CPU per request" includes all of a server's work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Launch", "Server", "cpu_seconds", "free_port", "pin_prefix", "rss_kib"]

_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pin_prefix(cpu: int | str) -> list[str]:
    """`taskset -c CPU` when the machine has a second core to keep the load generator apart
    (`cpu` may list several: "0,1" for a server with two workers)."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants (plus what they reaped), in seconds."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / _TICK


def rss_kib(pid: int) -> int:
    """VmRSS of one process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Launch:
    """How to start one server; `paths` maps each served model to its predict URL path."""

    name: str
    kind: str  # the request body shape: "stageserve", "mlflow" or "mlserver"
    argv: list[str]
    paths: dict[str, str]
    port: int
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0
    ready_body: bytes = b""
    # Probe every model, not just the first (stageserve loads its models concurrently, so
    # the first answering says nothing about the others).
    ready_all_models: bool = False


@dataclass
class Server:
    launch: Launch
    log_path: Path
    cpu: int | str = 0
    proc: subprocess.Popen[bytes] | None = None

    def url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.launch.port}{self.launch.paths[model]}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start and wait until a predict request to the first model answers 200."""
        self.start_unprobed()
        self._wait_ready()

    def start_unprobed(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*pin_prefix(self.cpu), *self.launch.argv],
                cwd=self.launch.cwd,
                env={**os.environ, **self.launch.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all it started
            )

    def _wait_ready(self) -> None:
        assert self.proc is not None
        models = list(self.launch.paths)
        waiting = models if self.launch.ready_all_models else models[:1]
        deadline = time.monotonic() + self.launch.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.launch.name} exited with {self.proc.returncode}")
            waiting = [m for m in waiting if self.post(m, self.launch.ready_body) != 200]
            if not waiting:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.launch.name} not answering after {self.launch.ready_timeout_s}s")

    def post(self, model: str, body: bytes) -> int:
        request = urllib.request.Request(
            self.url(model), data=body, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            # stageserve drains for a few seconds on the first SIGTERM; a second one means now.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.5)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # children it left behind in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
