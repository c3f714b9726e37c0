"""`stageserve replay`: prove what was predicted (exit 1 on any difference)."""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.history.replay import Replay, Tolerance
from gateway.pool.loaded import load_version
from registry_sync.errors import HistoryStoreError
from registry_sync.history.events import ActivationEvent, parse_time
from registry_sync.history.files import audit_files
from registry_sync.history.records import AuditRow
from registry_sync.history.store import HistoryReader, is_postgres_url, open_history
from registry_sync.logs import with_progress_lines
from registry_sync.progress import progress
from registry_sync.runtimes.safe_load import LoadPolicy

__all__ = ["add_replay", "history_location"]


def add_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run recorded requests on the exact versions that answered them; exit 1 on "
        "any difference",
        description=(
            "Read audit records (kept with audit_include_inputs), fetch each record's version "
            "from the registry, check its package digest, load it as the gateway does and "
            "predict the recorded inputs again. Reports matches, mismatches (with the largest "
            "difference) and records that could not be replayed, and checks each record's "
            "version against the activation journal. Exit 1 on any mismatch or disagreement, "
            "or when not one record could be replayed."
        ),
    )
    p.add_argument(
        "--audit",
        required=True,
        metavar="FILE|URL",
        help="the audit file (its rotated .1, .2 ... too) or a postgresql:// history store",
    )
    p.add_argument("--from", dest="since", metavar="TIME", help="records from (ISO 8601)")
    p.add_argument("--to", dest="until", metavar="TIME", help="records before (ISO 8601)")
    p.add_argument("--model", help="only this model's records")
    p.add_argument(
        "--registry",
        default=os.environ.get("STAGESERVE_REGISTRY"),
        help="the registry the versions come from (env STAGESERVE_REGISTRY)",
    )
    p.add_argument(
        "--journal",
        type=Path,
        help="the activation journal to check versions against (default: journal.jsonl "
        "beside the audit file; a PostgreSQL store has its own)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        help="keep fetched packages here (default: a temporary folder, removed after)",
    )
    p.add_argument(
        "--rtol",
        type=float,
        default=1e-9,
        help="relative tolerance for numbers (default 1e-9: the same package through the "
        "same code gives the same floats; libraries that changed since may not)",
    )
    p.add_argument("--atol", type=float, default=1e-12, help="absolute tolerance (1e-12)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=with_progress_lines(run_replay))


def history_location(audit: str, journal: Path | None = None) -> HistoryReader:
    """The store `--audit` names (a file must exist)."""
    if not is_postgres_url(audit) and not audit_files(Path(audit)):
        raise GatewayError(f"no audit file at {audit}")
    return open_history(audit, journal_path=journal)


def _seconds(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text).timestamp()
    except ValueError:
        raise GatewayError(f"{flag} {text!r} is not an ISO 8601 time") from None


def _journal(reader: HistoryReader, audit: str) -> Any:
    """The events of the replica that answered a record: a file store is one replica; a
    PostgreSQL store keeps each replica's own."""
    per_replica: dict[str | None, list[ActivationEvent]] = {}
    by_replica = getattr(reader, "replica_journal", None)

    def of(record: AuditRow) -> list[ActivationEvent] | None:
        key = record.replica if is_postgres_url(audit) else None
        if key not in per_replica:
            per_replica[key] = by_replica(key) if by_replica and key else reader.journal()
        return per_replica[key]

    return of


def run_replay(args: argparse.Namespace) -> int:
    from registry_sync.registry.git_registry import GitRegistry
    from registry_sync.sync.past import RegistryPastPackages

    if not args.registry:
        raise GatewayError("say where the versions come from: --registry (or STAGESERVE_REGISTRY)")
    since, until = _seconds(args.since, "--from"), _seconds(args.until, "--to")
    reader = history_location(args.audit, args.journal)
    registry: list[GitRegistry] = []

    def opened() -> GitRegistry:
        if not registry:
            registry.append(GitRegistry.open(args.registry))
        return registry[0]

    with tempfile.TemporaryDirectory(prefix="stageserve-replay-") as scratch:
        past = RegistryPastPackages(opened, args.cache or Path(scratch))
        replay = Replay(
            fetch=lambda model, version: past.fetch(model, version=version),
            loader=functools.partial(load_version, policy=LoadPolicy()),
            journal_of=_journal(reader, args.audit),
            tolerance=Tolerance(rtol=args.rtol, atol=args.atol),
        )
        try:
            with progress("replay", None, unit="records") as advance:
                report = replay.run(
                    reader.audit_records(since=since, until=until, model=args.model), advance
                )
        except HistoryStoreError as exc:
            raise GatewayError(str(exc)) from None
        finally:
            reader.close()
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        _print(report)
    return 1 if report.failed else 0


def _print(r: Any) -> None:
    largest = (
        f", largest difference {r.largest_difference:.3g} ({r.largest_difference_request_id})"
        if r.largest_difference is not None
        else ""
    )
    print(
        f"{r.records} records: {r.replayed} replayed, {r.matches} match, "
        f"{r.mismatches} differ{largest} (tolerance rtol {r.tolerance['rtol']:g}, "
        f"atol {r.tolerance['atol']:g})"
    )
    if r.not_replayed:
        reasons = ", ".join(f"{n} {why}" for why, n in r.not_replayed.items())
        print(f"not replayed: {reasons}")
    print(
        f"journal: {r.journal_checked} checked, {r.journal_disagreements} disagree "
        f"({r.records_per_s:g} records/s, {r.seconds:g} s)"
    )
    for label, examples in (
        ("differs", r.mismatch_examples),
        ("disagrees", r.disagreement_examples),
    ):
        for e in examples:
            print(f"  {label}: {e.request_id} {e.model} {e.version}: {e.detail}")
