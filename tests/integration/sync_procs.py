"""Real `stageserve sync` and `stageserve serve` processes over a real git registry.

`gateway("embedded", ...)` is one process following the registry; `gateway("sidecar", ...)`
is `stageserve sync` writing the cache and `stageserve serve --cache` following it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.server import ROOT, ServerProcess, free_port, wait_until

__all__ = ["gateway", "sidecar", "stageserve"]


def stageserve(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@contextmanager
def sidecar(
    registry: Path | str,
    cache: Path,
    *,
    poll_s: float = 0.5,
    args: tuple[str, ...] = (),
    wait_for_snapshot: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """`stageserve sync` in the background; its log is `<cache>/../sync.log`."""
    log = (cache.parent / "sync.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "sync", "--registry", str(registry),
         "--cache", str(cache), "--poll-interval-s", str(poll_s), *args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if wait_for_snapshot:
            wait_until((cache / "snapshot.json").is_file, 60, "the first snapshot")
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@contextmanager
def gateway(
    mode: str,
    registry: Path | str,
    cache: Path,
    *,
    poll_s: float = 0.5,
    serve_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    launcher: list[str] | None = None,
) -> Iterator[ServerProcess]:
    """A gateway following `registry`, embedded (one process) or with a sync sidecar."""
    cache.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(
        cache, env=dict(env or {}), launcher=list(launcher or []), port=free_port()
    )
    if mode == "embedded":
        server.args = ["--registry", str(registry), "--poll-interval-s", str(poll_s), *serve_args]
        with server:
            yield server
        return
    server.args = list(serve_args)
    with sidecar(registry, cache, poll_s=poll_s), server:
        yield server
