"""`--workers 2` with the PostgreSQL sink: one spool per worker (a spool has one writer), the
one merged journal shipped by the parent; every answered request exactly once in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_sklearn_package
from tests.postgres import Postgres, postgres  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

BODY = {"inputs": example_rows(1)}


def test_each_worker_ships_its_own_spool_and_the_parent_the_one_journal(
    postgres: Postgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = postgres.database()
    cache = tmp_path / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_sklearn_package(tmp_path / "lin"))])
    spool = tmp_path / "spool"
    env = {
        "STAGESERVE_POSTGRES_URL": url,
        "STAGESERVE_SPOOL_DIR": str(spool),
        "STAGESERVE_REPLICA_ID": "pod-1",
    }
    server = ServerProcess(cache, env=env, args=["--workers", "2"])
    server.start()
    try:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        answers = [server.predict("cost", BODY) for _ in range(40)]
    finally:
        assert server.stop() == 0, server.logs()
    answered = [a.body["request_id"] for a in answers]
    assert len({rid.split("-")[0] for rid in answered}) == 2, "one worker served everything"
    assert sorted(p.name for p in spool.iterdir()) == ["parent", "worker-0", "worker-1"]
    # Shipped on shutdown (postgres_drain_s): none missing, none doubled, none extra.
    recorded = [r[0] for r in postgres.query(url, "SELECT request_id FROM stageserve_audit")]
    assert sorted(recorded) == sorted(answered)
    # Both workers activated v1.0.0; the store has it once, from the parent's merged journal.
    assert postgres.query(url, "SELECT replica, version, kind FROM stageserve_journal") == [
        ("pod-1", "v1.0.0", "activated")
    ]
