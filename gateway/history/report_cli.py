"""`stageserve report`: what the history store knows, as a reviewer reads it."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.history.replay_cli import history_location
from registry_sync.errors import HistoryStoreError, RegistryError
from registry_sync.history.events import parse_time
from registry_sync.logs import with_progress_lines

__all__ = ["add_report"]


def add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="a report of models, versions, stage history, usage and performance over time",
        description=(
            "Read the history store (the audit file with the journal and outcomes beside it, "
            "or a postgresql:// store) and write a Markdown report with PNG plots, or one "
            "HTML file: per model its versions (requests, outcomes, coverage, MAE/RMSE or "
            "accuracy/log-loss), shadow pairs compared on outcomes, the stage history as "
            "served (journal) and as assigned (--registry), and usage per client."
        ),
    )
    p.add_argument("--audit", required=True, metavar="FILE|URL", help="the history store")
    p.add_argument(
        "--from", dest="since", metavar="TIME", help="from (ISO 8601; default 7 days ago)"
    )
    p.add_argument("--to", dest="until", metavar="TIME", help="to (ISO 8601; default now)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--bucket", help="time bucket of the plots, e.g. 1h, 1d (default by span)")
    p.add_argument(
        "--registry",
        default=os.environ.get("STAGESERVE_REGISTRY"),
        help="also show the stage history the registry records (env STAGESERVE_REGISTRY)",
    )
    p.add_argument("--journal", type=Path, help="the activation journal (default: beside)")
    p.add_argument("--format", choices=["md", "html"], default="md", help="md (default) or html")
    p.add_argument("--out", type=Path, default=Path("stageserve-report"), help="output folder")
    p.set_defaults(handler=with_progress_lines(run_report))


def run_report(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise GatewayError(
            "stageserve report draws with matplotlib: pip install 'stageserve[report]'"
        ) from None
    from gateway.history.performance import parse_duration_s
    from gateway.history.report import gather, render_html, render_markdown

    try:
        until = parse_time(args.until).timestamp() if args.until else time.time()
        since = parse_time(args.since).timestamp() if args.since else until - 7 * 86400
        bucket = parse_duration_s(args.bucket) if args.bucket else None
    except ValueError as exc:
        raise GatewayError(f"--from/--to/--bucket: {exc}") from None
    reader = history_location(args.audit, args.journal)
    try:
        data = gather(
            reader,
            since=since,
            until=until,
            models=args.model,
            bucket_s=bucket,
            assigned=_assigned(args.registry) if args.registry else None,
        )
        path = (render_html if args.format == "html" else render_markdown)(data, args.out)
    except (HistoryStoreError, RegistryError) as exc:
        raise GatewayError(str(exc)) from None
    finally:
        reader.close()
    print(path)
    return 0


def _assigned(location: str) -> Any:
    from registry_sync.registry.git_registry import GitRegistry

    registry = GitRegistry.open(location)

    def of(model: str) -> list[dict[str, Any]]:
        try:
            events = registry.history(model)
        except RegistryError:
            return []
        return [
            {
                "time": e.time,
                "event": e.event,
                "stage": e.stage,
                "version": e.version,
                "author": e.author,
            }
            for e in events
            if e.event in ("assignment", "unassignment", "registration", "deregistration")
        ]

    return of
