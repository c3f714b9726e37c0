"""The gateway with the PostgreSQL sink, against a real PostgreSQL: the database killed under
load and brought back (every answered request has exactly one record), the gateway SIGKILLed
(what the spool acknowledged is not lost), and fail_closed with a spool that fills up."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.load import LoadStream
from tests.integration.server import (
    ROOT,
    ServerProcess,
    entry,
    free_port,
    wait_until,
    write_state,
)
from tests.models import example_rows, save_sklearn_package
from tests.postgres import Postgres, postgres  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

BODY = {"inputs": example_rows(1)}


def _cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_sklearn_package(tmp_path / "lin"))])
    return cache


def _env(url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "STAGESERVE_POSTGRES_URL": url,
        "STAGESERVE_SPOOL_DIR": str(tmp_path / "spool"),
        "STAGESERVE_REPLICA_ID": "pod-1",
        **more,
    }


def _history(server: ServerProcess) -> dict[str, Any]:
    history: dict[str, Any] = server.get("/models").body["history"]
    return history


def _ids(postgres: Postgres, url: str) -> list[str]:  # noqa: F811
    """Primary request ids recorded ([] before the gateway made the tables)."""
    import psycopg

    try:
        rows = postgres.query(url, "SELECT request_id FROM stageserve_audit WHERE NOT shadow")
    except psycopg.errors.UndefinedTable:
        return []
    return [r[0] for r in rows]


def test_a_database_outage_under_load_loses_no_record_and_doubles_none(
    postgres: Postgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = postgres.database()
    env = _env(url, tmp_path, STAGESERVE_AUDIT_FAILURE_MODE="fail_closed")
    with ServerProcess(_cache(tmp_path), env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        with LoadStream(server.port, "/predict/cost", BODY, clients=2) as load:
            wait_until(lambda: _history(server)["shipped"]["audit"] > 50, 30, "records shipped")
            postgres.stop("immediate")
            try:
                wait_until(lambda: not _history(server)["connected"], 30, "the outage seen")
                outage = load.answered_since(time.monotonic())
                time.sleep(1.0)
            finally:
                postgres.start()
            time.sleep(1.0)
            answers = load.stop()
        # The outage refused nothing, even in fail_closed: the records were in the spool.
        assert all(a.status == 200 for a in answers), {a.status for a in answers}
        assert len(load.answered_since(time.monotonic() - 3)) > len(outage)
        wait_until(lambda: not any(_history(server)["backlog_bytes"].values()), 60, "the backfill")
        answered = [a.body["request_id"] for a in answers if a.body]
        # Exactly one record per answered request: none missing, none doubled, none extra.
        recorded = _ids(postgres, url)
        assert len(recorded) == len(set(recorded)) == len(answered)
        assert set(recorded) == set(answered)
        # The queries read it: feedback finds the request, performance counts every answer.
        rid = answered[-1]
        feedback = server.request(
            "POST",
            "/feedback/cost",
            json.dumps({"request_id": rid, "outcome": [20.0]}).encode(),
            {"content-type": "application/json"},
        )
        assert feedback.status == 200, feedback.body

        def performance() -> dict[str, Any]:
            (v,) = server.get("/models/cost/performance?window=1h").body["versions"]
            return v  # type: ignore[no-any-return]

        # The outcome is spooled and shipped like every record: within a moment.
        wait_until(lambda: performance()["outcomes"] == 1, 10, "the outcome shipped")
        assert performance()["requests"] == len(answered)
    # The gateway's activation is in the shared journal, with the replica that saw it.
    assert postgres.query(url, "SELECT replica, version, kind FROM stageserve_journal") == [
        ("pod-1", "v1.0.0", "activated")
    ]
    # ...and `stageserve which --served` reads it there.
    which = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "which", "cost", "prod", "--served",
         "--journal", url, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(which.stdout)["served"]["version"] == "v1.0.0"


def test_records_acknowledged_to_the_spool_survive_a_sigkill(
    postgres: Postgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    cache = _cache(tmp_path)
    # Nothing listens here: every record stays in the spool.
    away = f"postgresql://stageserve@127.0.0.1:{free_port()}/nowhere"
    server = ServerProcess(cache, env=_env(away, tmp_path))
    server.start()
    try:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        answered = [server.predict("cost", BODY).body["request_id"] for _ in range(40)]
        # Acknowledged: the audit writer has handed every record to the spool.
        wait_until(
            lambda: "stageserve_audit_backlog_records 0.0" in server.get("/metrics").body,
            10,
            "the records spooled",
        )
        spooled = b"".join(p.read_bytes() for p in (tmp_path / "spool" / "audit").glob("*.jsonl"))
        assert all(rid.encode() in spooled for rid in answered)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    finally:
        server.stop()
    url = postgres.database()
    with ServerProcess(cache, env=_env(url, tmp_path)):
        wait_until(lambda: set(answered) <= set(_ids(postgres, url)), 30, "the backfill")
    recorded = _ids(postgres, url)
    assert len(recorded) == len(set(recorded)) == len(answered)


def test_fail_closed_refuses_once_the_spool_is_full_and_recovers_when_it_drains(
    postgres: Postgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = postgres.database()
    env = _env(
        url,
        tmp_path,
        STAGESERVE_AUDIT_FAILURE_MODE="fail_closed",
        STAGESERVE_SPOOL_MAX_BYTES="8000",
    )
    with ServerProcess(_cache(tmp_path), env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        wait_until(lambda: _history(server)["connected"], 30, "connected")
        postgres.stop("immediate")
        try:
            statuses: list[int] = []

            def refused() -> bool:
                statuses.append(server.predict("cost", BODY).status)
                return statuses[-1] == 503

            # A full spool is a full disk: nothing is answered that cannot be recorded
            # (the first batch over the limit fails within a flush, ~50 ms).
            wait_until(refused, 30, "a 503 once the spool is full")
            refused = server.predict("cost", BODY)
            assert refused.body["error"]["code"] == "audit_unavailable"
            assert server.get("/readyz").status == 503
        finally:
            postgres.start()
        wait_until(lambda: server.predict("cost", BODY).status == 200, 60, "answers again")
        answered = statuses.count(200) + 1
    assert len(_ids(postgres, url)) >= answered
