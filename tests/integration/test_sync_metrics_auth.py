"""The sync sidecar's /metrics needs a bearer token when `sync_metrics_tokens_file` is set,
like the gateway's with `metrics_auth` (a real `stageserve sync` process on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import free_port, wait_until
from tests.integration.sync_procs import sidecar, stageserve
from tests.models import save_sklearn_package
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def _write_tokens(path: Path, *tokens: str) -> None:
    lines = [f"{hashlib.sha256(t.encode()).hexdigest()}  -" for t in tokens]
    path.write_text("# scrape tokens\n" + "\n".join(lines) + "\n")


def test_sidecar_metrics_need_a_listed_bearer_token_and_follow_rotation(tmp_path: Path) -> None:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    writer.register(reg, "cost_predictor", save_sklearn_package(tmp_path / "p"), version="v1.0.0")
    writer.assign(reg, "cost_predictor", "prod", "v1.0.0")
    tokens = tmp_path / "sync-metrics-tokens"
    _write_tokens(tokens, "prom-token")
    port = free_port()
    args = ("--metrics-port", str(port), "--metrics-tokens-file", str(tokens))
    cache = tmp_path / "cache"
    cache.mkdir()
    with sidecar(reg.path, cache, args=args) as proc:
        wait_until(lambda: _get(port, "/healthz")[0] == 200, 30, "the open /healthz")
        status, body, headers = _get(port, "/metrics")
        assert status == 401 and "stageserve_sync" not in body
        assert headers["WWW-Authenticate"] == 'Bearer realm="stageserve-sync"'
        assert _get(port, "/metrics", "wrong-token")[0] == 401
        status, body, _ = _get(port, "/metrics", "prom-token")
        assert status == 200 and "stageserve_sync_polls_total" in body

        # Rotation without a restart: the new token works, the old one stops.
        _write_tokens(tokens, "new-token")
        wait_until(lambda: _get(port, "/metrics", "new-token")[0] == 200, 10, "the new token")
        assert _get(port, "/metrics", "prom-token")[0] == 401
        # A broken file keeps the tokens loaded before (never opens /metrics).
        tokens.write_text("not-a-hash\n")
        assert _get(port, "/metrics", "new-token")[0] == 200
        assert _get(port, "/metrics")[0] == 401
        assert proc.poll() is None
    log = (tmp_path / "sync.log").read_text()
    assert "prom-token" not in log and "new-token" not in log


def test_sync_refuses_to_start_with_a_missing_token_file(tmp_path: Path) -> None:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    done = stageserve(
        "sync", "--registry", str(reg.path), "--cache", str(tmp_path / "cache"),
        "--metrics-port", str(free_port()), "--metrics-tokens-file", str(tmp_path / "absent"),
    )  # fmt: skip
    assert done.returncode == 1
    assert "sync_metrics_tokens_file" in done.stderr and "cannot read" in done.stderr
