"""The PostgreSQL store against a real server: spool -> shipper -> tables, the same answers as
the file store for the same records, idempotent re-shipping, an outage, a refused line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from registry_sync.history.files import FileHistory
from registry_sync.history.postgres.reader import PostgresHistory
from registry_sync.history.postgres.shipper import Shipper
from registry_sync.history.spool import Spool
from tests.postgres import Postgres, postgres  # noqa: F401 - the fixture
from tests.unit.registry_sync.history.test_files import T0, _record

pytestmark = pytest.mark.slow


def _outcome(i: int) -> bytes:
    record = json.loads(_record(i))
    return json.dumps({
        "request_id": record["request_id"], "received_at": "2026-09-21T15:00:00.000Z",
        "model": "cost", "stage": "prod", "version": record["version"], "digest": "sha256:d",
        "predicted_at": record["time"], "outcome": [21.0 + i], "regression_values": 1,
        "abs_error": 1.0, "squared_error": 1.0, "labels": 0, "correct": 0,
        "log_loss_values": 0, "log_loss": 0.0,
    }).encode() + b"\n"  # fmt: skip


def _event(i: int) -> bytes:
    return json.dumps({
        "at": f"2026-09-21T14:1{i}:00.000Z", "model": "cost", "stage": "prod",
        "version": f"v{i}", "digest": "sha256:d", "kind": "activated",
    }).encode() + b"\n"  # fmt: skip


def _spools(root: Path) -> dict[str, Spool]:
    return {s: Spool(root / s) for s in ("audit", "journal", "outcomes")}


def test_records_shipped_to_postgres_answer_like_the_files(
    postgres: Postgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = postgres.database()
    audit = b"".join(_record(i, version="v1" if i < 4 else "v2") for i in range(8))
    audit += _record(1, shadow=True)
    (tmp_path / "audit.jsonl").write_bytes(audit)
    (tmp_path / "outcomes.jsonl").write_bytes(_outcome(1) + _outcome(5))
    (tmp_path / "journal.jsonl").write_bytes(_event(1) + _event(2))
    spools = _spools(tmp_path / "spool")
    spools["audit"].append(audit)
    spools["outcomes"].append(_outcome(1) + _outcome(5))
    spools["journal"].append(_event(1) + _event(2))
    shipper = Shipper(url, spools, replica="pod-a")
    assert shipper.ship_once() == 9 + 2 + 2
    shipper.close()
    # Shipped again from the start (a crash before the position was saved): nothing doubles.
    for spool in spools.values():
        (spool.folder / "committed").unlink()
    again = Shipper(url, _spools(tmp_path / "spool"), replica="pod-a")
    assert again.ship_once() == 13
    again.close()
    assert postgres.query(url, "SELECT count(*) FROM stageserve_audit") == [(9,)]

    files, db = FileHistory(tmp_path / "audit.jsonl"), PostgresHistory(url)
    for store in (files, db):
        assert [e.version for e in store.journal()] == ["v1", "v2"]
        record = store.audit_record("r-3")
        assert record is not None and record.predictions == [23.0]
    window = (T0, T0 + 3600, 60.0)
    assert files.prediction_counts("cost", *window) == db.prediction_counts("cost", *window)
    assert files.outcome_sums("cost", *window) == db.outcome_sums("cost", *window)
    assert files.usage(None, None) == db.usage(None, None)
    assert db.outcome("r-5").outcome == [26.0]  # type: ignore[union-attr]
    assert [r.request_id for r in db.audit_records(since=T0 + 6)] == ["r-6", "r-7"]
    assert db.audit_record("r-7").replica == "pod-a"  # type: ignore[union-attr]
    db.close()
    files.close()


def test_an_outage_keeps_records_in_the_spool_until_the_database_returns(
    postgres: Postgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = postgres.database()
    spools = _spools(tmp_path / "spool")
    shipper = Shipper(url, spools, replica="pod-b", idle_s=0.05, max_backoff_s=0.5)
    shipper.start()
    try:
        spools["audit"].append(_record(0) + _record(1))
        deadline = time.monotonic() + 20
        while shipper.state.shipped["audit"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        postgres.stop("immediate")
        try:
            spools["audit"].append(b"".join(_record(i) for i in range(2, 6)) + b"not json\n")
            time.sleep(1.0)
            assert not shipper.state.connected and shipper.state.last_error
            assert spools["audit"].pending_bytes() > 0
        finally:
            postgres.start()
        deadline = time.monotonic() + 30
        while spools["audit"].pending_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        shipper.stop(2.0)
    ids = postgres.query(url, "SELECT request_id FROM stageserve_audit ORDER BY time")
    assert [r[0] for r in ids] == [f"r-{i}" for i in range(6)]
    # The line the database refused is kept apart; it held back nothing.
    assert postgres.query(url, "SELECT line FROM stageserve_rejected") == [(b"not json",)]
    assert shipper.state.rejected == 1
