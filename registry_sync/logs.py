"""Structured logging for every stageserve process: one JSON object per line on stderr,
no request data (that is the audit's job)."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import sys
from collections.abc import Callable

import msgspec

__all__ = ["JsonFormatter", "configure_logging", "with_progress_lines"]

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Structured fields a caller passes as `extra={"fields": {...}}` (sizes, durations).
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    """JSON lines on stderr for our loggers and uvicorn's (its access log stays off)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at info: an MLflow poll would be a dozen lines a poll.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def with_progress_lines(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A command whose long work, off a terminal, reports as JSON lines on stderr while it
    runs (the `stageserve.progress` logger only; the command prints its own results)."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        progress_log = logging.getLogger("stageserve.progress")
        if progress_log.handlers:  # someone configured it already (a test, a caller)
            return handler(args)
        lines = logging.StreamHandler(sys.stderr)
        lines.setFormatter(JsonFormatter())
        level, propagate = progress_log.level, progress_log.propagate
        progress_log.addHandler(lines)
        progress_log.setLevel(logging.INFO)
        progress_log.propagate = False
        try:
            return handler(args)
        finally:
            progress_log.removeHandler(lines)
            progress_log.setLevel(level)
            progress_log.propagate = propagate

    return run
