"""Performance over time: outcomes joined with the predictions they judge, per version and
time window, and shadow pairs compared on the same outcomes (`GET /models/{m}/performance`,
`stageserve report`). The JSON shape is documented in the README (HTTP API)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec

from gateway.history.scoring import OutcomeError, Scores, score
from registry_sync.history.records import OutcomeSums, PredictionCount, iso_of
from registry_sync.history.store import HistoryReader
from registry_sync.package.manifest import ColumnSpec

__all__ = [
    "Measures",
    "Performance",
    "SeriesPoint",
    "ShadowComparison",
    "VersionPerformance",
    "duration_text",
    "headline",
    "parse_duration_s",
    "performance",
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_s(text: str) -> float:
    """`90s`, `15m`, `1h`, `7d`, `2w` -> seconds; ValueError otherwise."""
    found = _DURATION.match(text.strip())
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 15m, 1h, 7d")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def duration_text(seconds: float) -> str:
    """The inverse of parse_duration_s: 3600 -> `1h`, 90 -> `90s`."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class Measures(msgspec.Struct, kw_only=True):
    """Quality over a set of outcomes; a measure is null when no outcome could give it."""

    outcomes: int = 0
    regression_values: int = 0
    mae: float | None = None
    rmse: float | None = None
    labels: int = 0
    accuracy: float | None = None
    log_loss_values: int = 0
    log_loss: float | None = None


# (measure, what a page calls it, whether lower is better), in order of preference.
_HEADLINES = (
    ("mae", "MAE", True),
    ("accuracy", "accuracy", False),
    ("log_loss", "log-loss", True),
)


def headline(measures: Iterable[Measures]) -> tuple[str, str, bool] | None:
    """The measure to show first (a chart, a comparison): MAE for regression, else accuracy,
    else log-loss; None when no outcome gave any."""
    listed = list(measures)
    for attribute, label, lower in _HEADLINES:
        if any(getattr(m, attribute) is not None for m in listed):
            return attribute, label, lower
    return None


class VersionPerformance(Measures, kw_only=True):
    version: str
    stages: list[str]
    requests: int
    """Answered primary requests in the window (the denominator of coverage)."""
    coverage: float | None
    """Share of those requests that got an outcome."""


class SeriesPoint(Measures, kw_only=True):
    start: str
    version: str
    requests: int
    coverage: float | None


class ShadowComparison(msgspec.Struct, kw_only=True):
    stage: str
    primary_version: str
    shadow_stage: str
    shadow_version: str
    outcomes: int
    primary: Measures
    shadow: Measures
    shadow_closer: int
    primary_closer: int
    ties: int


class Performance(msgspec.Struct, kw_only=True):
    model: str
    since: str = msgspec.field(name="from")
    until: str = msgspec.field(name="to")
    bucket_s: float
    versions: list[VersionPerformance]
    series: list[SeriesPoint]
    shadow: list[ShadowComparison]


def performance(
    reader: HistoryReader,
    model: str,
    *,
    since: float,
    until: float,
    bucket_s: float,
    outputs: list[ColumnSpec] | None = None,
) -> Performance:
    """Performance of `model`'s versions over predictions made in [since, until). `outputs`
    (the model's output signature) scores shadow pairs on outcomes; without it (a report read
    from the store alone) the outputs are inferred from the recorded predictions."""
    counts = reader.prediction_counts(model, since, until, bucket_s)
    sums = reader.outcome_sums(model, since, until, bucket_s)
    versions = _versions(counts, sums)
    series = _series(counts, sums)
    shadow = _shadow(reader, model, since, until, outputs)
    return Performance(
        model=model,
        since=iso_of(since),
        until=iso_of(until),
        bucket_s=bucket_s,
        versions=versions,
        series=series,
        shadow=shadow,
    )


def _measures(into: Measures, sums: Iterable[OutcomeSums]) -> None:
    n = reg = lab = correct = ll_n = 0
    abs_e = sq_e = ll = 0.0
    for s in sums:
        n += s.outcomes
        reg += s.regression_values
        abs_e += s.abs_error
        sq_e += s.squared_error
        lab += s.labels
        correct += s.correct
        ll_n += s.log_loss_values
        ll += s.log_loss
    into.outcomes, into.regression_values, into.labels, into.log_loss_values = n, reg, lab, ll_n
    into.mae = abs_e / reg if reg else None
    into.rmse = math.sqrt(sq_e / reg) if reg else None
    into.accuracy = correct / lab if lab else None
    into.log_loss = ll / ll_n if ll_n else None


def _versions(counts: list[PredictionCount], sums: list[OutcomeSums]) -> list[VersionPerformance]:
    requests: dict[str, int] = defaultdict(int)
    stages: dict[str, set[str]] = defaultdict(set)
    for c in counts:
        requests[c.version] += c.requests
        stages[c.version].add(c.stage)
    by_version: dict[str, list[OutcomeSums]] = defaultdict(list)
    for s in sums:
        by_version[s.version].append(s)
    out = []
    for version in sorted(set(requests) | set(by_version)):
        v = VersionPerformance(
            version=version,
            stages=sorted(stages[version]),
            requests=requests[version],
            coverage=None,
        )
        _measures(v, by_version[version])
        v.coverage = v.outcomes / v.requests if v.requests else None
        out.append(v)
    return out


def _series(counts: list[PredictionCount], sums: list[OutcomeSums]) -> list[SeriesPoint]:
    requests: dict[tuple[float, str], int] = defaultdict(int)
    for c in counts:
        requests[(c.bucket, c.version)] += c.requests
    by_key: dict[tuple[float, str], list[OutcomeSums]] = defaultdict(list)
    for s in sums:
        by_key[(s.bucket, s.version)].append(s)
    out = []
    for bucket, version in sorted(set(requests) | set(by_key)):
        n = requests[(bucket, version)]
        point = SeriesPoint(start=iso_of(bucket), version=version, requests=n, coverage=None)
        _measures(point, by_key[(bucket, version)])
        point.coverage = point.outcomes / n if n else None
        out.append(point)
    return out


def _inferred(predictions: list[Any]) -> list[ColumnSpec]:
    """Output columns as recorded predictions show them (numbers are `double`, the rest
    labels)."""
    first = next((p for p in predictions if p is not None), None)

    def kind(value: Any) -> Any:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, float):
            return "double"
        return "long" if isinstance(value, int) else "string"

    if isinstance(first, dict):
        return [ColumnSpec(name=n, type=kind(v)) for n, v in first.items()]
    return [ColumnSpec(name="prediction", type=kind(first))]


def _shadow(
    reader: HistoryReader,
    model: str,
    since: float,
    until: float,
    outputs: list[ColumnSpec] | None,
) -> list[ShadowComparison]:
    pairs: dict[tuple[str, str, str, str], list[tuple[Scores, Scores]]] = defaultdict(list)
    for found in reader.shadow_outcomes(model, since, until):
        specs = outputs if outputs is not None else _inferred(found.primary_predictions)
        try:
            primary = score(specs, found.primary_predictions, found.outcome)
            shadow = score(specs, found.shadow_predictions, found.outcome)
        except OutcomeError:
            continue  # a shadow whose outputs differ from the primary's: nothing to compare
        key = (found.stage, found.primary_version, found.shadow_stage, found.shadow_version)
        pairs[key].append((primary, shadow))
    out = []
    for (stage, pv, shadow_stage, sv), scored in sorted(pairs.items()):
        closer = [_closer(p, s) for p, s in scored]
        out.append(
            ShadowComparison(
                stage=stage,
                primary_version=pv,
                shadow_stage=shadow_stage,
                shadow_version=sv,
                outcomes=len(scored),
                primary=_scores_measures(p for p, _ in scored),
                shadow=_scores_measures(s for _, s in scored),
                shadow_closer=closer.count(1),
                primary_closer=closer.count(-1),
                ties=closer.count(0),
            )
        )
    return out


def _closer(primary: Scores, shadow: Scores) -> int:
    """1 when the shadow's answer was closer to the outcome, -1 the primary's, 0 a tie:
    by absolute error for numbers, then by labels right, then by log-loss."""
    for p, s in (
        (primary.abs_error, shadow.abs_error),
        (-primary.correct, -shadow.correct),
        (primary.log_loss, shadow.log_loss),
    ):
        if s < p:
            return 1
        if p < s:
            return -1
    return 0


def _scores_measures(scores: Iterable[Scores]) -> Measures:
    sums = [
        OutcomeSums(
            bucket=0.0,
            version="",
            outcomes=1,
            regression_values=s.regression_values,
            abs_error=s.abs_error,
            squared_error=s.squared_error,
            labels=s.labels,
            correct=s.correct,
            log_loss_values=s.log_loss_values,
            log_loss=s.log_loss,
        )
        for s in scores
    ]
    m = Measures()
    _measures(m, sums)
    return m


def to_json(report: Performance) -> dict[str, Any]:
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]
