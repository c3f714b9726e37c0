"""`serve --workers 2` through real processes: one port, one sync, one journal, one /metrics,
one audit file, swaps under load and SIGTERM across every worker, a killed worker replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from registry_sync.package.read import read_package
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.runtimes import load_predictor
from tests.integration.load import LoadStream
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package, save_sklearn_package
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
ROW = example_rows(1)[0]
BODY = {"inputs": [ROW]}


def _requests_total(server: ServerProcess, model: str) -> float:
    text = server.get("/metrics").body
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("stageserve_requests_total{") and f'model="{model}"' in line
    )


def _workers(server: ServerProcess) -> list[int]:
    assert server.proc is not None
    done = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in done.stdout.split()]


def _audit(path: Path) -> list[dict[str, object]]:
    # Every line must parse: a torn or interleaved line fails here.
    return [json.loads(line) for line in path.read_text().splitlines()]


def _served_by(answers: list[str]) -> set[str]:
    """Request id prefixes: one per worker process that answered."""
    return {rid.split("-")[0] for rid in answers}


def test_two_workers_one_sync_swap_under_load_one_journal_and_exact_totals(
    tmp_path: Path,
) -> None:
    packages = {
        "v1.0.0": save_sklearn_package(tmp_path / "a", export_onnx=True),
        "v1.1.0": save_sklearn_package(tmp_path / "b", offset=100.0, export_onnx=True),
    }
    expected = {}
    for version, path in packages.items():
        predictor = load_predictor(read_package(path))
        matrix = np.array([[ROW[n] for n in predictor.input_names]], dtype=np.float64)
        expected[version] = float(predictor.predict_matrix(matrix).reshape(-1)[0])
    registry = GitRegistry(init_registry(tmp_path / "registry"))
    for version, path in packages.items():
        writer.register(registry, MODEL, path, version=version)
    writer.assign(registry, MODEL, "prod", "v1.0.0")
    cache, audit, journal = tmp_path / "cache", tmp_path / "audit.jsonl", tmp_path / "journal.jsonl"
    cache.mkdir()
    args = ["--workers", "2", "--registry", str(registry.path), "--poll-interval-s", "0.5",
            "--audit-path", str(audit), "--journal-path", str(journal)]  # fmt: skip
    server = ServerProcess(cache, args=args)
    server.start()
    try:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "every worker ready")
        # A new connection per request: the kernel spreads them over both workers' sockets.
        singles = [server.predict(MODEL, BODY) for _ in range(40)]
        assert {a.status for a in singles} == {200}
        assert len(_served_by([a.body["request_id"] for a in singles])) == 2
        with LoadStream(server.port, f"/predict/{MODEL}", BODY, clients=6) as load:
            wait_until(lambda: len(load.answers) >= 100, 60, "answers from v1.0.0")
            writer.assign(registry, MODEL, "prod", "v1.1.0")
            wait_until(
                lambda: any(a.version == "v1.1.0" for a in load.answers), 60, "v1.1.0 answering"
            )
            first_new = min(a.received_at for a in load.answers if a.version == "v1.1.0")
            wait_until(lambda: len(load.answered_since(first_new)) >= 100, 60, "more answers")
        answers = load.stop()
        sent = len(singles) + len(answers)
        # Each scrape is answered by whichever worker takes the connection: always the total.
        assert [_requests_total(server, MODEL) for _ in range(4)] == [sent] * 4
        models = server.get(f"/models/{MODEL}").body
        assert models["stages"]["prod"]["version"] == "v1.1.0"
    finally:
        code = server.stop()
    assert code == 0, server.logs()
    assert [a.error for a in answers if a.status != 200] == []
    for a in answers:
        assert a.body is not None and a.body["version"] == a.version
        assert a.body["predictions"][0] == pytest.approx(expected[a.version], rel=1e-5)
    records = _audit(audit)
    by_id = {r["request_id"]: r for r in records}
    assert len(records) == len(by_id) == sent
    for a in answers:
        assert a.body is not None and by_id[a.body["request_id"]]["version"] == a.version
    events = [(e["kind"], e["version"]) for e in map(json.loads, journal.read_text().splitlines())]
    # Each activation once, though both workers swapped: v1.0.0 stopped serving when the
    # last worker left it.
    assert Counter(events) == Counter(
        {("activated", "v1.0.0"): 1, ("activated", "v1.1.0"): 1, ("deactivated", "v1.0.0"): 1}
    )
    assert events.index(("activated", "v1.1.0")) < events.index(("deactivated", "v1.0.0"))
    # One sync for the server: the parent's (workers log with a "worker" field).
    syncs = [
        line
        for line in server_log_lines(tmp_path)
        if line.get("logger") == "stageserve.workers" and "snapshot:" in str(line.get("message"))
    ]
    assert syncs and all("worker" not in line for line in syncs)


def server_log_lines(tmp_path: Path) -> list[dict[str, object]]:
    lines = []
    for log in tmp_path.glob("server-*.log"):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


def _cache_with_model(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(tmp_path / "v1"))])
    return cache


def test_sigterm_fails_readiness_on_every_worker_drains_and_exits_zero(tmp_path: Path) -> None:
    drain_s = 2.0
    audit = tmp_path / "audit.jsonl"
    server = ServerProcess(
        _cache_with_model(tmp_path),
        args=["--workers", "2", "--drain-s", str(drain_s), "--audit-path", str(audit)],
    )
    server.start()
    try:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        with LoadStream(server.port, "/predict/cost", BODY, clients=6) as stream:
            wait_until(lambda: len(stream.answers) >= 100, 60, "answers before SIGTERM")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            wait_until(lambda: server.get("/readyz").status == 503, 10, "readiness to fail")
            # Fresh connections reach both workers: all of them are unready, all still serve.
            probes = [server.get("/readyz").status for _ in range(12)]
            served = [server.predict("cost", BODY) for _ in range(12)]
            probed_by = time.monotonic()
            code = server.proc.wait(60)
            answers = stream.stop()
    finally:
        server.stop()
    assert code == 0, server.logs()
    assert probed_by - signalled < drain_s, "the probes ran past the drain; nothing was tested"
    assert probes == [503] * 12
    assert {a.status for a in served} == {200}
    assert len(_served_by([a.body["request_id"] for a in served])) == 2
    answered = [a for a in answers if a.status != 0]
    assert {a.status for a in answered} == {200}
    assert [a for a in answers if a.status == 0 and a.sent_at < signalled + drain_s] == []
    ids = {r["request_id"] for r in _audit(audit)}
    assert all(a.body is not None and a.body["request_id"] in ids for a in answered)
    assert all(a.body["request_id"] in ids for a in served)


def test_a_killed_worker_is_started_again_and_the_totals_never_go_down(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    server = ServerProcess(
        _cache_with_model(tmp_path), args=["--workers", "2", "--journal-path", str(journal)]
    )
    server.start()
    try:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        assert {server.predict("cost", BODY).status for _ in range(30)} == {200}
        assert _requests_total(server, "cost") == 30
        victim = _workers(server)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(_workers(server)) == 2 and victim not in _workers(server),
            30,
            "a new worker",
        )
        wait_until(
            lambda: all(server.get("/readyz").status == 200 for _ in range(6)), 60, "ready again"
        )
        # The dead worker's counts stay in the totals (as of its last scrape).
        assert _requests_total(server, "cost") == 30
        assert {server.predict("cost", BODY).status for _ in range(10)} == {200}
        assert _requests_total(server, "cost") == 40
    finally:
        assert server.stop() == 0, server.logs()
    events = [(e["kind"], e["version"]) for e in map(json.loads, journal.read_text().splitlines())]
    # The other worker kept serving v1.0.0 all along: one activation, nothing else.
    assert events == [("activated", "v1.0.0")]
