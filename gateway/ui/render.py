"""Jinja2 templates of the console, autoescaped (model names, descriptions and cards come from
whoever writes the registry), with the few filters the pages need. Built on first use, so an
app that nobody opens the console of never imports Jinja2."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from gateway.history.performance import duration_text
from registry_sync.history.records import iso_of

__all__ = ["Renderer"]

# What a page shows for "no value" (an en dash).
NONE = "\u2013"

# Version colours: distinct, readable on white, and the same version keeps its colour.
_PALETTE = (
    "#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16", "#4a5568",
)  # fmt: skip


def _colour(version: str | None) -> str:
    if not version:
        return "#e2e8f0"
    return _PALETTE[int(hashlib.blake2b(version.encode(), digest_size=2).hexdigest(), 16) % 8]


def _iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    # Milliseconds, as the activation journal writes them: a band's ends are the journal's.
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _when(value: datetime | str | None) -> str:
    """2026-11-23 03:27:21 UTC"""
    text = _iso(value)
    return text.replace("T", " ").replace("Z", " UTC").split(".")[0] if text else NONE


def _rate(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value:.1f}/s" if value < 100 else f"{value:,.0f}/s"


def _percent(value: float | None) -> str:
    return NONE if value is None else f"{100 * value:.1f}%"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.0f} ms"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Renderer:
    def __init__(self) -> None:
        self._env: Any = None

    def render(self, template: str, **context: Any) -> str:
        if self._env is None:
            import jinja2

            env = jinja2.Environment(
                loader=jinja2.PackageLoader("gateway.ui", "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.filters.update(
                colour=_colour, iso=_iso, when=_when, rate=_rate, percent=_percent, ms=_ms,
                num=_num, duration=duration_text, epoch_iso=iso_of,
            )  # fmt: skip
            self._env = env
        html: str = self._env.get_template(template).render(**context)
        return html
