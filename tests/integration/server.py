"""Start `stageserve serve` as a real subprocess on a free 127.0.0.1 port, for integration tests.

Also builds the cache folder a sidecar would: packages saved with `tests/models.py` helpers and
a `snapshot.json` written with `write_snapshot`.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_sync.package.read import read_package
from registry_sync.sync.snapshot import DesiredEntry, DesiredState, ModelSyncError, write_snapshot

__all__ = [
    "Served",
    "ServerProcess",
    "entry",
    "free_port",
    "wait_until",
    "with_rlimits",
    "write_state",
]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def entry(model: str, stage: str, version: str, package: Path) -> DesiredEntry:
    return DesiredEntry(
        model=model,
        stage=stage,
        version=version,
        package_path=str(package),
        digest=read_package(package, verify_digests=False).digest,
    )


def write_state(
    cache: Path, entries: list[DesiredEntry], errors: list[ModelSyncError] | None = None
) -> DesiredState:
    state = DesiredState(
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        registry="tests",
        entries=entries,
        errors=errors or [],
    )
    write_snapshot(state, cache / "snapshot.json")
    return state


_SET_RLIMITS_AND_EXEC = (
    "import os, resource, sys\n"
    "for which, soft, hard in eval(sys.argv[1]): resource.setrlimit(which, (soft, hard))\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


def with_rlimits(rlimits: dict[int, tuple[int, int]]) -> list[str]:
    """The interpreter's command line, set to start under `rlimits` (an exec wrapper rather
    than `preexec_fn`, which is unsafe in a process with threads)."""
    if not rlimits:
        return [sys.executable]
    limits = repr([(which, soft, hard) for which, (soft, hard) in rlimits.items()])
    return [sys.executable, "-c", _SET_RLIMITS_AND_EXEC, limits]


def wait_until(predicate: Any, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass(frozen=True)
class Served:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class ServerProcess:
    """`with ServerProcess(cache) as server:` starts, waits for /healthz, SIGTERMs on exit."""

    cache: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # Resource limits of the server process, e.g. {resource.RLIMIT_NOFILE: (128, 128)}.
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Runs the server under another command (e.g. `unshare` to give it a small tmpfs).
    launcher: list[str] = field(default_factory=list)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        # No drain period unless a test asks for one (test_gateway_shutdown does): every
        # teardown is a SIGTERM, and a drain would only make it slower.
        env = {**os.environ, "STAGESERVE_DRAIN_S": "0", **self.env}
        self.log_path = self.cache.parent / f"server-{self.port}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *self.launcher,
                *with_rlimits(self.rlimits),
                "-m",
                "gateway.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--cache",
                str(self.cache),
                *self.args,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._healthy, 60, "GET /healthz")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.get("/healthz").status == 200
        except OSError:
            return False

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (what Kubernetes sends) and wait; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Served:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("content-type") or ""
            # MLflow's /ping answers a bare newline as application/json.
            parsed: Any = json.loads(raw) if raw.strip() and "json" in ctype else raw.decode()
            return Served(resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed)
        finally:
            conn.close()

    def get(self, path: str) -> Served:
        return self.request("GET", path)

    def predict(
        self, model: str, payload: Any, *, stage: str | None = None, **headers: str
    ) -> Served:
        path = f"/predict/{model}" + (f"?stage={stage}" if stage else "")
        hdrs = {
            "content-type": "application/json",
            **{k.replace("_", "-"): v for k, v in headers.items()},
        }
        return self.request("POST", path, json.dumps(payload).encode(), hdrs)
