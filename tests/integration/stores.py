"""Object stores on 127.0.0.1 for URI tests: a static HTTP server and moto's S3 server, each a
real process (python -m http.server; moto_server, moto's standalone S3-compatible server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.integration.server import free_port, wait_until

__all__ = ["S3_ENV", "http_server", "s3_server"]

_BIN = Path(sys.executable).parent
# Made-up credentials for moto (which accepts any); the sync reads them as it would real ones.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "stageserve-test",
    "AWS_SECRET_ACCESS_KEY": "stageserve-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def _process(args: list[str], cwd: Path, url: str) -> Iterator[str]:
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_until(lambda: _answers(url), 60, f"{args[0]} on {url}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@contextmanager
def http_server(root: Path) -> Iterator[str]:
    """Serves the files under `root` at the returned base URL."""
    port = free_port()
    args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with _process(args, root, f"http://127.0.0.1:{port}") as url:
        yield url


@contextmanager
def s3_server(root: Path) -> Iterator[str]:
    """moto's S3 server; the endpoint URL (AWS_ENDPOINT_URL for boto3)."""
    port = free_port()
    args = [str(_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _process(args, root, f"http://127.0.0.1:{port}") as url:
        yield url
