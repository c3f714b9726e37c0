"""Progress of long work (registering or syncing a large artifact, the first mirror clone, a
replay, a report, an outcome import).

On a terminal (stderr is a TTY) a tqdm bar shows bytes done, rate and time left; anywhere else
there is no bar: one structured log line when the work starts and one when it ends, with the
size and the duration (`stageserve.progress` logger; the JSON formatter puts the fields in the
line; a count of things other than bytes, e.g. `unit="records"`, logs `total` and `records`).
tqdm is imported only for a terminal, so neither the gateway nor a sidecar imports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["Advance", "progress"]

log = logging.getLogger("stageserve.progress")

# Set (to anything) to get the log lines instead of bars even on a terminal.
_DISABLE_ENV = "STAGESERVE_NO_PROGRESS"


class Advance(Protocol):
    """Called with the number of bytes just done."""

    def __call__(self, n: int) -> None: ...


def _on_terminal() -> bool:
    if os.environ.get(_DISABLE_ENV):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(
    what: str, total_bytes: int | None, *, unit: str = "B", **fields: Any
) -> Iterator[Advance]:
    """`with progress("verify cost v1.0.0", size) as advance: ... advance(len(chunk))`.

    `total_bytes=None` when the size is not known up front (a clone): the bar then counts
    what is done, without an end. `unit` other than bytes (`"records"`) counts things
    instead: the total and the count are then in that unit. `fields` go into both log lines
    (model, version, ...).
    """
    in_bytes = unit == "B"
    started = time.monotonic()
    done = [0]
    if _on_terminal():
        from tqdm import tqdm

        bar = tqdm(
            total=total_bytes,
            desc=what,
            unit=unit if in_bytes else f" {unit}",
            unit_scale=in_bytes,
            unit_divisor=1024,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )

        def advance_bar(n: int) -> None:
            done[0] += n
            bar.update(n)

        try:
            yield advance_bar
        finally:
            bar.close()
        return

    def advance(n: int) -> None:
        done[0] += n

    # Bytes keep their field names (total_bytes, bytes); a count of things says its unit.
    total_key, done_key = ("total_bytes", "bytes") if in_bytes else ("total", unit)
    log.info(
        "%s: started%s",
        what,
        f" ({_size(total_bytes, unit)})" if total_bytes is not None else "",
        extra={"fields": {"event": "started", "task": what, total_key: total_bytes, **fields}},
    )
    ok = False
    try:
        yield advance
        ok = True
    finally:
        elapsed = time.monotonic() - started
        log.info(
            "%s: %s, %s in %.2f s",
            what,
            "done" if ok else "failed",
            _size(done[0], unit),
            elapsed,
            extra={
                "fields": {
                    "event": "done" if ok else "failed",
                    "task": what,
                    done_key: done[0],
                    "duration_s": round(elapsed, 3),
                    **fields,
                }
            },
        )


def _size(n: int | None, counted: str = "B") -> str:
    if n is None:
        return "size unknown"
    if counted != "B":
        return f"{n} {counted}"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
