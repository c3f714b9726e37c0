from __future__ import annotations

from pathlib import Path

from registry_sync.mlflow.history import StageHistory


def test_changes_are_recorded_once_and_which_at_answers_from_them(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history = StageHistory(path)
    assert len(history.observe({("m", "prod"): ("1", "@prod", "models:/m-a")}, 100.0)) == 1
    assert history.observe({("m", "prod"): ("1", "@prod", "models:/m-a")}, 101.0) == []
    history.observe({("m", "prod"): ("2", "@prod", "models:/m-b")}, 200.5)
    history.observe({}, 300.0)
    reread = StageHistory(path)
    assert [(e.event, e.version) for e in reread.load().events] == [
        ("assignment", "1"),
        ("assignment", "2"),
        ("unassignment", "2"),
    ]
    assert reread.at("m", "prod", 99.0) is None
    assert reread.at("m", "prod", 200.0).version == "1"  # type: ignore[union-attr]
    assert reread.at("m", "prod", 200.5).version == "2"  # type: ignore[union-attr]
    assert reread.at("m", "prod", 300.0) is None
    # The last assignment survives its unassignment (the sync keeps serving it).
    assert reread.last_assigned()[("m", "prod")].version == "2"


def test_models_not_followed_are_not_unassigned(tmp_path: Path) -> None:
    history = StageHistory(tmp_path / "h.jsonl")
    history.observe({("a", "prod"): ("1", "@prod", ""), ("b", "prod"): ("1", "@prod", "")}, 1.0)
    assert history.observe({("a", "prod"): ("1", "@prod", "")}, 2.0, models={"a"}) == []


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    StageHistory(path).observe({("a", "prod"): ("1", "@prod", "")}, 1.0)
    with path.open("ab") as handle:
        handle.write(b'{"time": "20')
    assert len(StageHistory(path).load().events) == 1
