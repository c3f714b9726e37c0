"""Replay: re-run recorded requests on the exact version each was answered by, and compare.

Each audit record kept with its inputs (`audit_include_inputs`) names its version and package
digest; the package is fetched from the registry at that version, verified to have that digest,
loaded as the gateway loads it (same runtime, same allowlist, same request decoding and output
checks) and given the recorded inputs. The answer must equal the recorded predictions within
the tolerance. Each record's version is also checked against the activation journal: the
version that served its stage while the request was being answered.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.pool.loaded import LoadedVersion, Loader
from registry_sync.errors import HistoryQueryError, RegistryError
from registry_sync.history.events import ActivationEvent, parse_time, versions_served_between
from registry_sync.history.records import AuditRow
from registry_sync.sync.past import PastPackage
from registry_sync.sync.snapshot import DesiredEntry

__all__ = ["Replay", "ReplayReport", "Tolerance", "compare"]

log = logging.getLogger("stageserve.replay")
_EXAMPLES = 10
_LOADED_MAX = 8
# Journal times have millisecond resolution and the pool routes a request a moment after the
# request's clock started: a record may name the version that served up to 1 ms earlier.
_SLACK = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Tolerance:
    """|replayed - recorded| <= atol + rtol * |recorded|, for every number."""

    rtol: float = 1e-9
    atol: float = 1e-12

    def close(self, recorded: float, replayed: float) -> bool:
        return abs(replayed - recorded) <= self.atol + self.rtol * abs(recorded)


class Example(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    model: str
    version: str | None
    detail: str


class ReplayReport(msgspec.Struct, kw_only=True):
    records: int = 0
    replayed: int = 0
    matches: int = 0
    mismatches: int = 0
    largest_difference: float | None = None
    largest_difference_request_id: str | None = None
    not_replayed: dict[str, int] = msgspec.field(default_factory=dict)
    journal_checked: int = 0
    journal_disagreements: int = 0
    tolerance: dict[str, float] = msgspec.field(default_factory=dict)
    seconds: float = 0.0
    records_per_s: float = 0.0
    mismatch_examples: list[Example] = msgspec.field(default_factory=list)
    disagreement_examples: list[Example] = msgspec.field(default_factory=list)
    not_replayed_examples: list[Example] = msgspec.field(default_factory=list)

    @property
    def failed(self) -> bool:
        """What `stageserve replay` exits 1 for."""
        nothing = self.records > 0 and self.replayed == 0
        return self.mismatches > 0 or self.journal_disagreements > 0 or nothing


def compare(recorded: Any, replayed: Any, tolerance: Tolerance) -> tuple[bool, float]:
    """(equal within the tolerance, the largest absolute difference of two numbers)."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        if recorded.keys() != replayed.keys():
            return False, math.inf
        results = [compare(recorded[k], replayed[k], tolerance) for k in recorded]
        return all(ok for ok, _ in results), max((d for _, d in results), default=0.0)
    if isinstance(recorded, list) and isinstance(replayed, list):
        if len(recorded) != len(replayed):
            return False, math.inf
        results = [compare(a, b, tolerance) for a, b in zip(recorded, replayed, strict=True)]
        return all(ok for ok, _ in results), max((d for _, d in results), default=0.0)
    numbers = (int, float)
    if (
        isinstance(recorded, numbers)
        and isinstance(replayed, numbers)
        and not isinstance(recorded, bool)
        and not isinstance(replayed, bool)
    ):
        diff = abs(float(replayed) - float(recorded))
        return tolerance.close(float(recorded), float(replayed)), diff
    return recorded == replayed and type(recorded) is type(replayed), 0.0


PackageFetch = Callable[[str, str], PastPackage]
JournalOf = Callable[[AuditRow], "list[ActivationEvent] | None"]


@dataclass
class Replay:
    """`fetch(model, version)` gives a verified package; `loader` loads it as the gateway
    does; `journal_of(record)` the events of the replica that answered it (None: no check)."""

    fetch: PackageFetch
    loader: Loader
    journal_of: JournalOf
    tolerance: Tolerance = field(default_factory=Tolerance)
    report: ReplayReport = field(default_factory=ReplayReport)
    _loaded: OrderedDict[tuple[str, str, str], LoadedVersion | str] = field(
        default_factory=OrderedDict
    )

    def run(
        self, records: Iterable[AuditRow], advance: Callable[[int], None] | None = None
    ) -> ReplayReport:
        started = time.perf_counter()
        r = self.report
        r.tolerance = {"rtol": self.tolerance.rtol, "atol": self.tolerance.atol}
        reasons: Counter[str] = Counter()
        for record in records:
            r.records += 1
            self._check_journal(record)
            reason = self._replay(record)
            if reason is not None:
                reasons[reason[0]] += 1
                _keep(r.not_replayed_examples, record, reason[1])
            if advance is not None:
                advance(1)
        r.not_replayed = dict(sorted(reasons.items()))
        r.seconds = round(time.perf_counter() - started, 3)
        r.records_per_s = round(r.records / r.seconds, 1) if r.seconds else 0.0
        for lv in self._loaded.values():
            if isinstance(lv, LoadedVersion):
                lv.close()
        return r

    def _replay(self, record: AuditRow) -> tuple[str, str] | None:
        """None when replayed; else (reason, detail) it could not be."""
        if record.status != 200 or record.version is None or record.digest is None:
            return "not_answered", f"answered {record.status}"
        if record.predictions is None:
            return "no_predictions", "predictions were not recorded"
        if record.inputs is None:
            return "no_inputs", "inputs were not kept (audit_include_inputs is off)"
        lv = self._version(record.model, record.version, record.digest)
        if isinstance(lv, str):
            return "version_unavailable", lv
        try:
            batch = lv.schema.decode(msgspec.json.encode({"inputs": record.inputs}))
        except GatewayError as exc:
            return "inputs_invalid", str(exc)
        if record.input_sha256 is not None:
            digest = hashlib.sha256(batch.canonical_json()).hexdigest()
            if digest != record.input_sha256:
                return "inputs_altered", "the inputs do not hash to the recorded input_sha256"
        try:
            replayed = lv.schema.predictions(lv.predict(batch), batch.rows)
        except Exception as exc:  # the model failed now: that is a mismatch, not a skip
            replayed = [f"error: {type(exc).__name__}"]
        self.report.replayed += 1
        ok, diff = compare(record.predictions, replayed, self.tolerance)
        r = self.report
        if math.isfinite(diff) and (r.largest_difference is None or diff > r.largest_difference):
            r.largest_difference, r.largest_difference_request_id = diff, record.request_id
        if ok:
            r.matches += 1
        else:
            r.mismatches += 1
            detail = f"recorded {record.predictions!r:.120}, replayed {replayed!r:.120}"
            _keep(r.mismatch_examples, record, detail)
        return None

    def _version(self, model: str, version: str, digest: str) -> LoadedVersion | str:
        """The loaded version, or why it cannot be (remembered: each is tried once)."""
        key = (model, version, digest)
        found = self._loaded.get(key)
        if found is not None:
            self._loaded.move_to_end(key)
            return found
        loaded: LoadedVersion | str
        try:
            package = self.fetch(model, version)
            if package.digest != digest:
                loaded = f"the registry's package has digest {package.digest}, not {digest}"
            else:
                loaded = self.loader(
                    DesiredEntry(
                        model=model,
                        stage="",
                        version=version,
                        package_path=package.package_path,
                        digest=digest,
                    )
                )
        except (HistoryQueryError, RegistryError, GatewayError) as exc:
            loaded = str(exc)
        self._loaded[key] = loaded
        while len(self._loaded) > _LOADED_MAX:
            _, old = self._loaded.popitem(last=False)
            if isinstance(old, LoadedVersion):
                old.close()
        return loaded

    def _check_journal(self, record: AuditRow) -> None:
        if record.version is None:
            return
        events = self.journal_of(record)
        if not events or record.as_of is not None or record.shadow:
            return  # as-of and shadow answers are not the stage's served version
        end = parse_time(record.time)
        start = end - timedelta(milliseconds=record.latency_ms) - _SLACK
        served = versions_served_between(events, record.model, record.stage, start, end)
        self.report.journal_checked += 1
        if record.version not in served:
            self.report.journal_disagreements += 1
            detail = f"the journal says {sorted(served) or 'nothing'} served {record.stage} then"
            _keep(self.report.disagreement_examples, record, detail)


def _keep(examples: list[Example], record: AuditRow, detail: str) -> None:
    if len(examples) < _EXAMPLES:
        examples.append(
            Example(
                request_id=record.request_id,
                model=record.model,
                version=record.version,
                detail=detail,
            )
        )
