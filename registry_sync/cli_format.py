"""Human output of the registry CLI: compact aligned tables (`--json` bypasses all of this)."""

from __future__ import annotations

from collections.abc import Sequence

from registry_sync.registry.check import CheckReport
from registry_sync.registry.views import (
    HistoryEvent,
    ModelDetail,
    ModelSummary,
    StageResolution,
    TagSignature,
    TagWritten,
)

__all__ = [
    "format_check",
    "format_detail",
    "format_history",
    "format_models",
    "format_which",
    "format_written",
    "table",
]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; '-' for an empty cell."""
    cells = [list(headers)] + [[c if c else "-" for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def format_models(models: Sequence[ModelSummary]) -> str:
    if not models:
        return "no models in the registry"
    stages = sorted({s for m in models for s in m.stages})
    headers = ["MODEL", "LATEST", *[s.upper() for s in stages], "LABELS", "DESCRIPTION"]
    rows = [
        [
            m.name + (" (deprecated)" if m.deprecated else ""),
            m.latest or "",
            *[m.stages.get(s, "") for s in stages],
            ",".join(m.labels),
            m.description,
        ]
        for m in models
    ]
    return table(headers, rows)


def format_detail(detail: ModelDetail) -> str:
    head = [
        ["model", detail.name + (" (deprecated)" if detail.deprecated else "")],
        ["path", detail.path],
        ["latest", detail.latest or ""],
        ["stages", ", ".join(f"{s}={v}" for s, v in sorted(detail.stages.items()))],
        ["labels", ", ".join(detail.labels)],
        ["description", detail.description],
        ["format", detail.format or ""],
    ]
    if detail.card is not None:
        head += [["owner", detail.card.owner], ["intended use", detail.card.intended_use]]
        head += [["limitations", detail.card.limitations]]
    parts = [table(["FIELD", "VALUE"], head)]
    rows = [
        [
            v.version,
            "yes" if v.active else "deregistered",
            ", ".join(v.stages),
            v.registered_at or "",
            v.commit[:7],
        ]
        for v in detail.versions
    ]
    parts.append(table(["VERSION", "ACTIVE", "STAGES", "REGISTERED", "COMMIT"], rows))
    if detail.assignments:
        rows = [
            [a.stage, a.version, a.tag, a.assigned_at, a.author, _signed(a.signed, a.signature)]
            for a in detail.assignments
        ]
        parts.append(table(["STAGE", "VERSION", "TAG", "ASSIGNED", "BY", "SIGNATURE"], rows))
    if detail.untrusted:
        parts.append("\n".join(f"not followed: {u.describe()}" for u in detail.untrusted))
    if detail.signature is not None:
        sig = [
            ["input", c.name, c.type, "yes" if c.required else "no"]
            for c in detail.signature.inputs
        ]
        sig += [["output", c.name, c.type, ""] for c in detail.signature.outputs]
        parts.append(table(["SIGNATURE", "NAME", "TYPE", "REQUIRED"], sig))
    return "\n\n".join(parts)


def format_which(found: StageResolution) -> str:
    rows = [[found.model, found.stage, found.version, found.commit[:7], found.assigned_at]]
    text = table(["MODEL", "STAGE", "VERSION", "COMMIT", "ASSIGNED"], rows)
    if found.signed_by:
        text += f"\npromoted by {found.signed_by}"
    return text


def format_history(events: Sequence[HistoryEvent]) -> str:
    rows = [
        [e.time, e.model, e.event, e.version or "", e.stage or "", e.commit[:7], e.tag,
         e.author, _signed(e.signed, e.signature)]
        for e in events
    ]  # fmt: skip
    headers = ["TIME", "MODEL", "EVENT", "VERSION", "STAGE", "COMMIT", "TAG", "BY", "SIGNATURE"]
    return table(headers, rows)


def _signed(signed: bool, signature: TagSignature | None) -> str:
    """What the trust policy says of a tag's signature, else only whether it has one."""
    if signature is not None:
        return signature.describe()
    return "signed (not checked)" if signed else ""


def format_written(written: Sequence[TagWritten]) -> str:
    return "\n".join(f"created tag {w.tag} at {w.commit[:7]} ({w.time})" for w in written)


def format_check(report: CheckReport) -> str:
    lines = [f"{p.subject}: {p.message}" for p in report.problems]
    verdict = "FAILED" if report.problems else "ok"
    lines.append(
        f"{verdict}: {report.tags} tags, {report.versions} versions, {report.stages} stages, "
        f"{len(report.problems)} problems in {report.registry}"
    )
    return "\n".join(lines)
