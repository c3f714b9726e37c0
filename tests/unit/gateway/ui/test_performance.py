"""The console's performance panel: what a caller may read of a model's report, and where
the chart puts each bucket."""

from __future__ import annotations

import pytest

from gateway.history.performance import (
    Measures,
    Performance,
    SeriesPoint,
    ShadowComparison,
    VersionPerformance,
)
from gateway.ui.performance import HEIGHT, WIDTH, nice_bucket_s, panel

SINCE = 1_700_000_000.0  # 2023-11-14T22:13:20Z
HOUR = 3600.0


def _point(hour: int, version: str, **measures: float | int | None) -> SeriesPoint:
    from registry_sync.history.records import iso_of

    return SeriesPoint(
        start=iso_of(SINCE + hour * HOUR), version=version, requests=10, coverage=0.5, **measures
    )


def _report(**measures: float | int | None) -> Performance:
    return Performance(
        model="m",
        since="2023-11-14T22:13:20.000Z",
        until="2023-11-15T22:13:20.000Z",
        bucket_s=HOUR,
        versions=[
            VersionPerformance(
                version="v1", stages=["prod"], requests=20, coverage=0.5, outcomes=10, **measures
            ),
            VersionPerformance(
                version="v2",
                stages=["dev", "prod"],
                requests=20,
                coverage=0.5,
                outcomes=10,
                **measures,
            ),
            VersionPerformance(
                version="v3", stages=["dev"], requests=5, coverage=1.0, outcomes=5, **measures
            ),
        ],
        series=[
            _point(0, "v1", outcomes=5, **measures),
            _point(12, "v2", outcomes=5, **measures),
            _point(23, "v3", outcomes=5, **measures),
        ],
        shadow=[
            ShadowComparison(
                stage="prod",
                primary_version="v2",
                shadow_stage="dev",
                shadow_version="v3",
                outcomes=5,
                primary=Measures(),
                shadow=Measures(),
                shadow_closer=3,
                primary_closer=1,
                ties=1,
            )
        ],
    )


def test_a_caller_who_reads_only_prod_sees_only_prod_versions_points_and_no_dev_pair() -> None:
    p = panel(
        _report(mae=2.0, regression_values=10),
        since=SINCE,
        until=SINCE + 24 * HOUR,
        may_read_stage=lambda stage: stage == "prod",
    )
    assert [(v.version, v.stages) for v in p.report.versions] == [
        ("v1", ["prod"]),
        ("v2", ["prod"]),  # its dev half is not named
    ]
    assert {pt.version for pt in p.report.series} == {"v1", "v2"}
    assert p.report.shadow == []  # the pair involves dev
    assert p.chart is not None and [line.version for line in p.chart.lines] == ["v1", "v2"]
    assert p.outcomes == 20


def test_the_chart_puts_each_bucket_at_its_middle_and_scales_mae_to_its_largest_value() -> None:
    p = panel(_report(mae=2.0, regression_values=10), since=SINCE, until=SINCE + 24 * HOUR)
    assert p.chart is not None and p.chart.measure == "mae" and p.chart.lower_is_better
    assert p.chart.top == pytest.approx(2.2)  # 10% headroom over the largest MAE
    dots = {line.version: line.dots for line in p.chart.lines}
    # The first hour's middle is 1/48 of the day along; the last hour's 47/48.
    assert dots["v1"][0].x == pytest.approx(WIDTH / 48)
    assert dots["v3"][0].x == pytest.approx(WIDTH * 47 / 48)
    assert all(0 < d.y < HEIGHT for line in p.chart.lines for d in line.dots)
    assert p.chart.lines[0].path.endswith("l0,0")  # a lone point still draws


def test_a_classifier_is_charted_by_accuracy_on_a_fixed_scale() -> None:
    p = panel(_report(accuracy=0.75, labels=10), since=SINCE, until=SINCE + 24 * HOUR)
    assert p.chart is not None and p.chart.measure == "accuracy"
    assert p.chart.top == 1.0 and not p.chart.lower_is_better


def test_no_outcomes_no_chart() -> None:
    assert panel(_report(), since=SINCE, until=SINCE + 24 * HOUR).chart is None


@pytest.mark.parametrize(
    ("span_s", "bucket_s"),
    [(50, 1), (100, 5), (3000, 60), (86400, 1800), (30 * 86400, 43200), (400 * 86400, 7 * 86400)],
)
def test_the_model_page_cuts_its_timeline_into_at_most_sixty_readable_buckets(
    span_s: float, bucket_s: float
) -> None:
    assert nice_bucket_s(span_s) == bucket_s
    assert span_s / nice_bucket_s(span_s) <= 60
