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


def test_the_console_timeline_has_bands_from_the_recorded_moves(tmp_path: Path) -> None:
    from registry_sync.mlflow.location import MlflowLocation
    from registry_sync.mlflow.source import MlflowRegistry
    from registry_sync.sync.history import HistoryReader

    location = MlflowLocation.parse("mlflow+http://127.0.0.1:5000", {})
    registry = MlflowRegistry(location, tmp_path)
    assert isinstance(registry, HistoryReader)
    registry.history.observe({("m", "prod"): ("1", "@prod", "models:/m-a")}, 100.0)
    registry.history.observe({("m", "prod"): ("2", "@prod", "models:/m-b")}, 200.0)
    registry.history.observe({}, 300.0)
    found = registry.registry_history(generated_at="now", stages=None, models=None)
    (model,) = found.models
    assert [v.version for v in model.versions] == ["1", "2"]
    assert [(b.version, b.start[17:19], (b.end or "")[17:19]) for b in model.assigned] == [
        ("1", "40", "20"),
        ("2", "20", "00"),
        (None, "00", ""),
    ]
    assert [e.kind for e in model.events] == ["assignment", "assignment", "unassignment"]
