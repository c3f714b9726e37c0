"""`stageserve report`: models, versions, stage history, usage per client and performance over
time, from the history store, as Markdown (with PNG plots beside it) or one HTML file (plots
inlined). matplotlib draws the plots (the `report` extra; imported only here). Reading the
store and drawing show progress per model (a bar on a terminal, JSON log lines elsewhere)."""

from __future__ import annotations

import base64
import html
import io
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.history.performance import Performance, duration_text, headline, performance
from registry_sync.history.events import ActivationEvent, parse_time
from registry_sync.history.records import UsageRow, iso_of
from registry_sync.history.store import HistoryReader
from registry_sync.progress import progress

__all__ = ["ReportData", "gather", "render_html", "render_markdown"]


@dataclass
class ReportData:
    since: float
    until: float
    usage: list[UsageRow]
    journal: list[ActivationEvent]
    performance: dict[str, Performance]
    assigned: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    generated_at: str = field(default_factory=lambda: iso_of(datetime.now(UTC).timestamp()))

    @property
    def models(self) -> list[str]:
        return sorted({u.model for u in self.usage} | set(self.performance))


def gather(
    reader: HistoryReader,
    *,
    since: float,
    until: float,
    models: list[str] | None = None,
    bucket_s: float | None = None,
    assigned: Callable[[str], list[dict[str, Any]]] | None = None,
) -> ReportData:
    """Everything the report shows, from one store (and the registry's intent, if given)."""
    usage = [u for u in reader.usage(since, until) if models is None or u.model in models]
    names = sorted({u.model for u in usage} | set(models or []))
    span = until - since
    bucket = bucket_s or (3600.0 if span <= 2 * 86400 else 86400.0)
    perf = {}
    with progress("report: performance per model", len(names), unit="models") as advance:
        for m in names:
            perf[m] = performance(reader, m, since=since, until=until, bucket_s=bucket)
            advance(1)
    journal = [
        e for e in reader.journal() if e.model in names and parse_time(e.at).timestamp() < until
    ]
    return ReportData(
        since=since,
        until=until,
        usage=usage,
        journal=journal,
        performance=perf,
        assigned={m: assigned(m) for m in names} if assigned is not None else {},
    )


# -- plots -------------------------------------------------------------------------------------


def _plot(p: Performance) -> bytes | None:
    """Requests and quality per version over time, as a PNG (None when there is no series)."""
    if not p.series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_version: dict[str, list[Any]] = defaultdict(list)
    for point in p.series:
        by_version[point.version].append(point)
    quality, name, lower = headline(p.series) or ("mae", "MAE", True)
    label = f"{name} ({'lower' if lower else 'higher'} is better)"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for version, points in sorted(by_version.items()):
        times = [datetime.fromtimestamp(parse_time(pt.start).timestamp(), UTC) for pt in points]
        top.plot(times, [pt.requests for pt in points], marker=".", label=version)
        values = [getattr(pt, quality) for pt in points]
        shown = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
        if shown:
            bottom.plot(*zip(*shown, strict=True), marker="o", label=version)
    top.set_ylabel(f"requests per {duration_text(p.bucket_s)}")
    top.set_title(f"{p.model}: traffic and {name} per version")
    top.legend(loc="upper left", fontsize="small")
    bottom.set_ylabel(label)
    bottom.grid(alpha=0.3)
    top.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


# -- sections as rows (one source for both formats) ---------------------------------------------


def _sections(data: ReportData) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, per model where it is per model."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    for model in data.models:
        perf = data.performance.get(model)
        if perf is not None and perf.versions:
            out.append(
                (
                    f"{model}: versions",
                    ["version", "stages", "requests", "outcomes", "coverage", "MAE", "RMSE",
                     "accuracy", "log-loss"],
                    [
                        [v.version, ", ".join(v.stages), str(v.requests), str(v.outcomes),
                         _num(v.coverage, 3), _num(v.mae), _num(v.rmse), _num(v.accuracy, 3),
                         _num(v.log_loss)]
                        for v in perf.versions
                    ],
                )
            )  # fmt: skip
        if perf is not None and perf.shadow:
            # A classifier's pairs by accuracy (they have no MAE), a regressor's by MAE.
            judged = [m for s in perf.shadow for m in (s.primary, s.shadow)]
            measure, name, _ = headline(judged) or ("mae", "MAE", True)
            out.append(
                (
                    f"{model}: shadow pairs on the same outcomes",
                    ["stage", "primary", "shadow", "outcomes", f"primary {name}",
                     f"shadow {name}", "shadow closer", "primary closer", "ties"],
                    [
                        [s.stage, s.primary_version, s.shadow_version, str(s.outcomes),
                         _num(getattr(s.primary, measure)), _num(getattr(s.shadow, measure)),
                         str(s.shadow_closer), str(s.primary_closer), str(s.ties)]
                        for s in perf.shadow
                    ],
                )
            )  # fmt: skip
        served = [e for e in data.journal if e.model == model]
        if served:
            out.append(
                (
                    f"{model}: stage history (served, from the activation journal)",
                    ["time", "stage", "version", "event", "detail"],
                    [[e.at, e.stage, e.version, e.kind, e.message[:80]] for e in served],
                )
            )
        assigned = data.assigned.get(model) or []
        if assigned:
            out.append(
                (
                    f"{model}: stage history (assigned, from the registry)",
                    ["time", "stage", "version", "event", "by"],
                    [
                        [a["time"], a.get("stage") or "", a.get("version") or "", a["event"],
                         a.get("author", "")]
                        for a in assigned
                    ],
                )
            )  # fmt: skip
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for u in data.usage:
        key = (u.principal or "(anonymous)", u.model)
        totals[key][0] += u.requests
        totals[key][1] += u.requests if u.status >= 400 else 0
    out.append(
        (
            "Usage per client",
            ["client", "model", "requests", "refused or failed"],
            [[c, m, str(n), str(bad)] for (c, m), (n, bad) in sorted(totals.items())],
        )
    )
    return out


def _plots(data: ReportData) -> dict[str, bytes]:
    found = {}
    with progress("report: plots", len(data.models), unit="models") as advance:
        for model in data.models:
            perf = data.performance.get(model)
            png = _plot(perf) if perf is not None else None
            if png is not None:
                found[model] = png
            advance(1)
    return found


def _intro(data: ReportData) -> str:
    return (
        f"From {iso_of(data.since)} to {iso_of(data.until)}; generated {data.generated_at}. "
        f"{len(data.models)} models, {sum(u.requests for u in data.usage)} requests."
    )


def render_markdown(data: ReportData, out_dir: Path) -> Path:
    """`out_dir/report.md` and one `<model>.png` per model with a series."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# stageserve report", "", _intro(data), ""]
    plots = _plots(data)
    for model, png in plots.items():
        name = f"{_safe(model)}.png"
        (out_dir / name).write_bytes(png)
        lines += [f"## {model}: performance over time", "", f"![{model}]({name})", ""]
    for title, header, rows in _sections(data):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |"]
        lines += ["|" + "---|" * len(header)]
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
        ]
        lines += [""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def render_html(data: ReportData, out_dir: Path) -> Path:
    """`out_dir/report.html`: one file, the plots inlined."""
    out_dir.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>stageserve report</title>",
        "<style>body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin-bottom:1.5rem}"
        "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}</style>",
        "<h1>stageserve report</h1>",
        f"<p>{esc(_intro(data))}</p>",
    ]
    for model, png in _plots(data).items():
        encoded = base64.b64encode(png).decode()
        parts += [
            f"<h2>{esc(model)}: performance over time</h2>",
            f"<img alt='{esc(model)}' src='data:image/png;base64,{encoded}'>",
        ]
    for title, header, rows in _sections(data):
        parts += [f"<h2>{esc(title)}</h2>", "<table><tr>"]
        parts += [f"<th>{esc(h)}</th>" for h in header] + ["</tr>"]
        for row in rows:
            parts += ["<tr>", *(f"<td>{esc(c)}</td>" for c in row), "</tr>"]
        parts += ["</table>"]
    path = out_dir / "report.html"
    path.write_text("".join(parts))
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
