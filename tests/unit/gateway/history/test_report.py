"""`stageserve report`'s tables, from a report's data (no store, no plots)."""

from __future__ import annotations

from pathlib import Path

from gateway.history.performance import (
    Measures,
    Performance,
    ShadowComparison,
    VersionPerformance,
)
from gateway.history.report import ReportData, render_markdown


def _pair(primary: Measures, shadow: Measures) -> ShadowComparison:
    return ShadowComparison(
        stage="prod", primary_version="v1", shadow_stage="dev", shadow_version="v2",
        outcomes=4, primary=primary, shadow=shadow, shadow_closer=0, primary_closer=1, ties=3,
    )  # fmt: skip


def _report(tmp_path: Path, pair: ShadowComparison) -> str:
    perf = Performance(
        model="m",
        since="2026-01-01T00:00:00.000Z",
        until="2026-01-02T00:00:00.000Z",
        bucket_s=3600.0,
        versions=[
            VersionPerformance(version="v1", stages=["prod"], requests=4, coverage=1.0, outcomes=4)
        ],
        series=[],
        shadow=[pair],
    )
    data = ReportData(since=0.0, until=1.0, usage=[], journal=[], performance={"m": perf})
    return render_markdown(data, tmp_path).read_text()


def test_a_classifier_shadow_pair_is_compared_by_accuracy(tmp_path: Path) -> None:
    text = _report(
        tmp_path,
        _pair(
            Measures(outcomes=4, labels=4, accuracy=0.75),
            Measures(outcomes=4, labels=4, accuracy=0.5),
        ),
    )
    assert "| outcomes | primary accuracy | shadow accuracy |" in text
    assert "| prod | v1 | v2 | 4 | 0.75 | 0.5 | 0 | 1 | 3 |" in text


def test_a_regression_shadow_pair_is_compared_by_mae(tmp_path: Path) -> None:
    text = _report(
        tmp_path,
        _pair(
            Measures(outcomes=4, regression_values=4, mae=0.5, rmse=0.5),
            Measures(outcomes=4, regression_values=4, mae=10.0, rmse=10.0),
        ),
    )
    assert "| outcomes | primary MAE | shadow MAE |" in text
    assert "| prod | v1 | v2 | 4 | 0.5 | 10 | 0 | 1 | 3 |" in text
