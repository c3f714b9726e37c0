"""Performance over time as the console shows it: one model's report (the same `Performance`
that `GET /models/{m}/performance` answers) cut to what the caller may read, with the
geometry of a small chart of the headline measure per version (the page draws it as SVG).

Plain data and arithmetic; the query itself is `gateway.history.query.model_performance`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from gateway.history.performance import Performance, SeriesPoint, headline
from registry_sync.history.records import epoch_of

__all__ = ["Chart", "Dot", "Line", "PerformancePanel", "nice_bucket_s", "panel"]

# Chart coordinates (the SVG's viewBox); the page stretches it to the width it has.
WIDTH = 1000.0
HEIGHT = 100.0
_PAD = 8.0
# Bucket sizes a person reads at a glance; the model page picks one that gives at most
# _TARGET_BUCKETS points over its timeline.
_NICE_BUCKETS_S = (
    1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400,
)  # fmt: skip
_TARGET_BUCKETS = 60


def nice_bucket_s(span_s: float) -> float:
    """The smallest readable bucket that cuts `span_s` into at most 60 points."""
    for size in _NICE_BUCKETS_S:
        if span_s / size <= _TARGET_BUCKETS:
            return float(size)
    return float(math.ceil(span_s / _TARGET_BUCKETS / 86400) * 86400)


@dataclass(frozen=True)
class Dot:
    """One bucket of one version: where it sits, and what it says (the tooltip)."""

    start: str
    version: str
    value: float
    outcomes: int
    requests: int
    coverage: float | None
    x: float
    y: float


@dataclass(frozen=True)
class Line:
    version: str
    dots: list[Dot]

    @property
    def path(self) -> str:
        """SVG path data: the dots joined in time order (a lone dot draws as a round cap)."""
        steps = [f"{'M' if i == 0 else 'L'}{d.x:.2f},{d.y:.2f}" for i, d in enumerate(self.dots)]
        return " ".join(steps) if len(self.dots) > 1 else f"{steps[0]} l0,0"


@dataclass(frozen=True)
class Chart:
    measure: str  # the Measures attribute drawn (mae, accuracy, log_loss)
    label: str
    lower_is_better: bool
    top: float  # the value at the top edge (the bottom edge is 0)
    lines: list[Line]
    width: float = WIDTH
    height: float = HEIGHT


@dataclass(frozen=True)
class PerformancePanel:
    model: str
    since: str  # ISO 8601, as the API's `from`/`to` take them
    until: str
    bucket_s: float
    report: Performance
    chart: Chart | None

    @property
    def outcomes(self) -> int:
        return sum(v.outcomes for v in self.report.versions)

    @property
    def headline(self) -> str | None:
        return self.chart.measure if self.chart else None


def _chart(report: Performance, since: float, until: float) -> Chart | None:
    found = headline(report.versions)
    if found is None:
        return None
    attribute, label, lower = found
    points: list[tuple[SeriesPoint, float]] = [
        (p, value) for p in report.series if (value := getattr(p, attribute)) is not None
    ]
    values = [v for _, v in points]
    top = 1.0 if attribute == "accuracy" else (max(values, default=0.0) * 1.1 or 1.0)
    span = until - since
    lines: dict[str, list[Dot]] = {}
    for p, value in points:
        middle = epoch_of(p.start) + report.bucket_s / 2
        x = WIDTH * min(max((middle - since) / span, 0.0), 1.0)
        y = _PAD + (HEIGHT - 2 * _PAD) * (1.0 - min(value / top, 1.0))
        lines.setdefault(p.version, []).append(
            Dot(p.start, p.version, value, p.outcomes, p.requests, p.coverage, x, y)
        )
    return Chart(
        measure=attribute,
        label=label,
        lower_is_better=lower,
        top=top,
        lines=[Line(version, dots) for version, dots in sorted(lines.items())],
    )


def panel(
    report: Performance,
    *,
    since: float,
    until: float,
    may_read_stage: Callable[[str], bool] | None = None,
) -> PerformancePanel:
    """The panel of one model's report; `may_read_stage(stage) -> bool`, when given, keeps
    only the versions that served a stage the caller may read (and those stages), their
    points, and the shadow pairs both of whose stages it may read."""
    if may_read_stage is not None:
        readable = may_read_stage
        versions = []
        for v in report.versions:
            stages = [s for s in v.stages if readable(s)]
            if stages:
                versions.append(msgspec.structs.replace(v, stages=stages))
        kept = {v.version for v in versions}
        report = msgspec.structs.replace(
            report,
            versions=versions,
            series=[p for p in report.series if p.version in kept],
            shadow=[s for s in report.shadow if readable(s.stage) and readable(s.shadow_stage)],
        )
    return PerformancePanel(
        model=report.model,
        since=report.since,
        until=report.until,
        bucket_s=report.bucket_s,
        report=report,
        chart=_chart(report, since, until),
    )
