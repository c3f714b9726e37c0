"""The activation journal answers "which version served this stage at time T"."""

from __future__ import annotations

from pathlib import Path

from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.journal import ActivationJournal, parse_time, read_journal, served_at


def _event(at: str, version: str, kind: str, stage: str = "prod") -> ActivationEvent:
    return ActivationEvent(
        at=at,
        model="cost_predictor",
        stage=stage,
        version=version,
        digest=f"sha256:{version}",
        kind=kind,  # type: ignore[arg-type]
        message="boom" if kind == "failed" else "",
    )


def _journal(tmp_path: Path, events: list[ActivationEvent]) -> Path:
    path = tmp_path / "journal.jsonl"
    journal = ActivationJournal(path)
    for event in events:
        journal(event)
    journal.close()
    return path


def test_journal_answers_which_version_served_across_swaps(tmp_path: Path) -> None:
    path = _journal(
        tmp_path,
        [
            _event("2026-10-01T10:00:00.000Z", "v1.0.0", "activated"),
            _event("2026-10-01T11:00:00.000Z", "v1.1.0", "activated"),
            _event("2026-10-01T11:00:00.005Z", "v1.0.0", "deactivated"),
            _event("2026-10-01T12:00:00.000Z", "v1.2.0", "failed"),
            _event("2026-10-01T13:00:00.000Z", "v1.1.0", "deactivated"),
        ],
    )
    events = read_journal(path)

    def version_at(text: str) -> str | None:
        return served_at(events, "cost_predictor", "prod", parse_time(text)).version

    assert version_at("2026-10-01T09:59:59Z") is None
    assert version_at("2026-10-01T10:30:00Z") == "v1.0.0"
    assert version_at("2026-10-01T11:30:00Z") == "v1.1.0"
    # A failed activation does not change what serves.
    answer = served_at(events, "cost_predictor", "prod", parse_time("2026-10-01T12:30:00"))
    assert answer.version == "v1.1.0"
    assert answer.since == "2026-10-01T11:00:00.000Z"
    assert answer.last_failure is not None and answer.last_failure.version == "v1.2.0"
    assert version_at("2026-10-01T13:30:00Z") is None


def test_journal_keeps_stages_apart(tmp_path: Path) -> None:
    path = _journal(
        tmp_path,
        [
            _event("2026-10-01T10:00:00Z", "v1.0.0", "activated", stage="prod"),
            _event("2026-10-01T10:00:00Z", "v2.0.0", "activated", stage="dev"),
        ],
    )
    events = read_journal(path)
    at = parse_time("2026-10-01T11:00:00Z")
    assert served_at(events, "cost_predictor", "prod", at).version == "v1.0.0"
    assert served_at(events, "cost_predictor", "dev", at).version == "v2.0.0"
    assert served_at(events, "other_model", "prod", at).version is None


def test_torn_last_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = _journal(tmp_path, [_event("2026-10-01T10:00:00Z", "v1.0.0", "activated")])
    with open(path, "ab") as f:
        f.write(b'{"at": "2026-10-01T11:00')
    events = read_journal(path)
    assert [e.version for e in events] == ["v1.0.0"]
