"""`stageserve which NAME STAGE --served --at TIME`: what really served, beside what was assigned.

The registry answers what was *assigned* to a stage at a time; the gateway's activation
journal answers what *served* it (later by the sync delay, or never if the load failed).
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.telemetry.journal import ServedAnswer, parse_time, served_at
from registry_sync.errors import HistoryStoreError
from registry_sync.history.store import is_postgres_url, journal_events

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "which",
        help="which version served (journal) and was assigned (registry) to a stage at a time",
        description=(
            "Answer from the gateway's activation journal (--served) which version really "
            "served NAME's STAGE at --at TIME, and from the registry (--registry) which one "
            "was assigned then."
        ),
    )
    p.add_argument("name", metavar="NAME", help="the model name, e.g. cost_predictor")
    p.add_argument("stage", metavar="STAGE", help="the stage, e.g. prod")
    p.add_argument(
        "--at",
        default="now",
        metavar="TIME",
        help="ISO 8601 time, naive means UTC (default: now)",
    )
    p.add_argument("--served", action="store_true", help="answer from the activation journal")
    p.add_argument(
        "--journal",
        default=os.environ.get("STAGESERVE_JOURNAL_PATH"),
        help="the gateway's activation journal (env STAGESERVE_JOURNAL_PATH), or the "
        "postgresql:// history store of many replicas",
    )
    p.add_argument(
        "--registry",
        default=os.environ.get("STAGESERVE_REGISTRY"),
        help="also answer from this registry (env STAGESERVE_REGISTRY)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


class _Answer(msgspec.Struct, kw_only=True):
    model: str
    stage: str
    at: str
    served: dict[str, Any] | None = None
    assigned: dict[str, Any] | None = None


def run(args: argparse.Namespace) -> int:
    at = _when(args.at)
    if not args.served and not args.registry:
        raise GatewayError("say where to look: --served (the journal) and/or --registry")
    answer = _Answer(model=args.name, stage=args.stage, at=_iso(at))
    if args.served:
        if args.journal is None:
            raise GatewayError("--served needs --journal PATH (or STAGESERVE_JOURNAL_PATH)")
        if not is_postgres_url(args.journal) and not Path(args.journal).is_file():
            raise GatewayError(f"activation journal {args.journal} does not exist")
        try:
            events = journal_events(args.journal)
        except HistoryStoreError as exc:
            raise GatewayError(str(exc)) from None
        served = served_at(events, args.name, args.stage, at)
        answer.served = _served_dict(served)
    if args.registry:
        # Without --at: the registry as it is now, including an assignment made this very
        # second (an --at time counts only the seconds before it).
        when = None if args.at == "now" else at
        answer.assigned = _assigned(args.registry, args.name, args.stage, when)
    if args.json:
        print(msgspec.json.encode(answer).decode())
        return 0
    where = f"{args.name}#{args.stage} at {answer.at}"
    if answer.served is not None:
        version = answer.served["version"]
        since = f" (since {answer.served['since']})" if version else ""
        print(f"served:   {where}: {version or 'nothing'}{since}")
        failure = answer.served.get("last_failure")
        if failure:
            print(f"          last failed activation: {failure['version']} at {failure['at']}")
    if answer.assigned is not None:
        version = answer.assigned.get("version")
        since = f" (assigned {answer.assigned['assigned_at']})" if version else ""
        print(f"assigned: {where}: {version or 'nothing'}{since}")
    return 0


def _served_dict(served: ServedAnswer) -> dict[str, Any]:
    failure = served.last_failure
    return {
        "version": served.version,
        "digest": served.digest,
        "since": served.since,
        "last_failure": None
        if failure is None
        else {"version": failure.version, "at": failure.at, "message": failure.message},
    }


def _assigned(location: str, name: str, stage: str, at: datetime | None) -> dict[str, Any]:
    from registry_sync.errors import NoVersionInStageError
    from registry_sync.registry.git_registry import GitRegistry

    registry = GitRegistry.open(location)
    try:
        found = registry.which(name, stage, at=None if at is None else int(at.timestamp()))
    except NoVersionInStageError:
        return {"version": None}
    return {"version": found.version, "assigned_at": found.assigned_at, "commit": found.commit}


def _when(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    try:
        return parse_time(text)
    except ValueError:
        raise GatewayError(
            f"--at {text!r} is not an ISO 8601 time (e.g. 2026-10-01T12:00:00Z)"
        ) from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
