"""`POST /feedback/{model}`: observed outcomes, matched to the request they judge, validated
against the output signature, scored, recorded and counted.

An outcome names its request by the server's `request_id` (from the response), or by the
client's own `x-request-id` (`client_request_id`) when that identifies one request of the
model. It must be shaped like the prediction: one entry per row, a value (or an object of
outputs) each, `null` where nothing was observed. One outcome per request: sending the same
one again is answered `unchanged`; a different one is a 409 (outcomes are facts, not edits).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter

from gateway.access import Access, Principal
from gateway.errors import (
    ConflictError,
    HistoryNotFoundError,
    InputValidationError,
    NotScorableError,
    PayloadTooLargeError,
    RequestError,
    shown,
)
from gateway.history.scoring import OutcomeError, Scores, score
from gateway.history.store import GatewayHistory
from registry_sync.history.records import AuditRow, OutcomeRecord, iso_of
from registry_sync.history.store import HistoryReader
from registry_sync.package.manifest import ColumnSpec

__all__ = ["Feedback", "FeedbackBody", "FeedbackItem", "OutcomeMetrics", "OutputsOf"]

# (model, version, digest) -> that version's output columns, or None when not known here.
OutputsOf = Callable[[str, str, "str | None"], "Sequence[ColumnSpec] | None"]
_RECENT_MAX = 100_000
_AMBIGUOUS_SHOWN = 10


class FeedbackItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    request_id: str | None = None
    client_request_id: str | None = None
    outcome: Any = None


class FeedbackBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One outcome (`request_id` or `client_request_id`, and `outcome`), or several under
    `outcomes`."""

    request_id: str | None = None
    client_request_id: str | None = None
    outcome: Any = None
    outcomes: list[FeedbackItem] | None = None

    def items(self, limit: int) -> tuple[list[FeedbackItem], bool]:
        """The outcomes sent, and whether the body was a batch."""
        if self.outcomes is None:
            item = FeedbackItem(
                request_id=self.request_id,
                client_request_id=self.client_request_id,
                outcome=self.outcome,
            )
            return [item], False
        if self.request_id or self.client_request_id or self.outcome is not None:
            raise InputValidationError("$", "send one outcome, or several under `outcomes`")
        if len(self.outcomes) > limit:
            raise PayloadTooLargeError(
                f"{len(self.outcomes)} outcomes in one body, more than {limit}",
                {"feedback_max_items": limit},
            )
        return list(self.outcomes), True


class OutcomeMetrics:
    """Counters updated as outcomes are recorded: MAE over any window is
    rate(error_sum{measure="abs_error"}) / rate(values_total{kind="regression"})."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "stageserve_outcomes",
            "Outcomes recorded (requests that got one), by the version that predicted.",
            ["model", "version"],
            registry=registry,
        )
        self.values = Counter(
            "stageserve_outcome_values",
            "Predicted values that got an outcome: kind regression (numbers), label "
            "(classes; accuracy), probability (log-loss).",
            ["model", "version", "kind"],
            registry=registry,
        )
        self.sums = Counter(
            "stageserve_outcome_error_sum",
            "Sums over scored values: abs_error, squared_error (regression), correct "
            "(labels), log_loss (probabilities).",
            ["model", "version", "measure"],
            registry=registry,
        )
        self.rejected = Counter(
            "stageserve_feedback_rejected",
            "Outcomes refused, by reason (not_found, invalid, not_scorable, conflict).",
            ["model", "reason"],
            registry=registry,
        )

    def record(self, model: str, version: str, s: Scores) -> None:
        self.outcomes.labels(model, version).inc()
        for kind, n in (
            ("regression", s.regression_values),
            ("label", s.labels),
            ("probability", s.log_loss_values),
        ):
            if n:
                self.values.labels(model, version, kind).inc(n)
        for measure, value, n in (
            ("abs_error", s.abs_error, s.regression_values),
            ("squared_error", s.squared_error, s.regression_values),
            ("correct", float(s.correct), s.labels),
            ("log_loss", s.log_loss, s.log_loss_values),
        ):
            if n:
                self.sums.labels(model, version, measure).inc(value)


class Feedback:
    """Matches, validates, scores and records outcomes; one at a time on the history thread
    (so a repeated outcome is always seen as one)."""

    def __init__(
        self,
        history: GatewayHistory,
        outputs_of: OutputsOf,
        metrics: OutcomeMetrics,
        *,
        access: Access | None = None,
        wanted_models: Callable[[], dict[str, list[str]]] = dict,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.history = history
        # Awaited once before retrying a request id not found: its record may have been
        # answered a moment ago and not be written yet.
        self.settle = settle
        self.outputs_of = outputs_of
        self.metrics = metrics
        self.access = access
        self.wanted_models = wanted_models
        self._recent: OrderedDict[str, bytes] = OrderedDict()

    async def submit(
        self, model: str, items: list[FeedbackItem], principal: Principal | None, *, batch: bool
    ) -> dict[str, Any]:
        """Record each outcome. A single one that fails raises its error (the HTTP error of
        the route); a batch reports each item's result instead."""
        reader = self.history.need_reader()
        if self.access is not None and principal is not None:
            self.access.check_model(principal, "feedback", model, self.wanted_models())
        if not batch:
            return await self._settled_one(reader, model, items[0], principal)
        results = []
        for index, item in enumerate(items):
            try:
                result = await self._settled_one(reader, model, item, principal)
            except RequestError as exc:
                result = {"status": "rejected", "error": {"code": exc.code, "message": exc.message}}
            results.append({"index": index, **result})
        recorded = sum(r["status"] == "recorded" for r in results)
        return {"model": model, "recorded": recorded, "results": results}

    async def _settled_one(
        self,
        reader: HistoryReader,
        model: str,
        item: FeedbackItem,
        principal: Principal | None,
    ) -> dict[str, Any]:
        try:
            return await self.history.run(self._one, reader, model, item, principal, False)
        except HistoryNotFoundError:
            if self.settle is None:
                raise
        await self.settle()
        return await self.history.run(self._one, reader, model, item, principal, True)

    def _one(
        self,
        reader: HistoryReader,
        model: str,
        item: FeedbackItem,
        principal: Principal | None,
        final: bool,
    ) -> dict[str, Any]:
        try:
            return self._record(reader, model, item, principal)
        except HistoryNotFoundError:
            if final:
                self.metrics.rejected.labels("_unknown", "not_found").inc()
            raise
        except RequestError as exc:
            reason = {"conflict": "conflict", "not_scorable": "not_scorable"}.get(
                exc.code, "invalid"
            )
            # Label only names the gateway serves: clients cannot grow the label set.
            known = model if model in self.wanted_models() else "_unknown"
            self.metrics.rejected.labels(known, reason).inc()
            raise

    def _record(
        self,
        reader: HistoryReader,
        model: str,
        item: FeedbackItem,
        principal: Principal | None,
    ) -> dict[str, Any]:
        record = self._find(reader, model, item)
        if self.access is not None and principal is not None:
            self.access.check(principal, "feedback", model, record.stage, self.wanted_models)
        _check_scorable(record)
        assert record.version is not None and record.predictions is not None
        outputs = self.outputs_of(model, record.version, record.digest)
        if outputs is None:
            raise NotScorableError(
                f"the output signature of {model} {record.version} is not known to this gateway",
                {"version": record.version},
            )
        try:
            scores = score(outputs, record.predictions, item.outcome)
        except OutcomeError as exc:
            raise InputValidationError(exc.path, exc.reason, "outcome") from None
        observed = msgspec.json.encode(item.outcome)
        done = self._recent.get(record.request_id)
        if done is None:
            existing = reader.outcome(record.request_id)
            done = msgspec.json.encode(existing.outcome) if existing is not None else None
        summary = {
            "request_id": record.request_id,
            "model": model,
            "stage": record.stage,
            "version": record.version,
            "scores": msgspec.to_builtins(scores),
        }
        if done is not None:
            if done != observed:
                raise ConflictError(
                    f"request {record.request_id} already has a different outcome",
                    {"request_id": record.request_id},
                )
            return {"status": "unchanged", **summary}
        writer = self.history.outcomes
        assert writer is not None
        writer.write(
            OutcomeRecord(
                request_id=record.request_id,
                received_at=iso_of(time.time()),
                model=model,
                stage=record.stage,
                version=record.version,
                digest=record.digest,
                predicted_at=record.time,
                outcome=item.outcome,
                principal=principal.name if principal is not None else None,
                client_request_id=record.client_request_id,
                **msgspec.to_builtins(scores),
            )
        )
        self._recent[record.request_id] = observed
        if len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)
        self.metrics.record(model, record.version, scores)
        return {"status": "recorded", **summary}

    def _find(self, reader: HistoryReader, model: str, item: FeedbackItem) -> AuditRow:
        if (item.request_id is None) == (item.client_request_id is None):
            raise InputValidationError(
                "$", "name the request by exactly one of request_id, client_request_id", "missing"
            )
        if item.outcome is None:
            raise InputValidationError("$.outcome", "required", "missing")
        if item.request_id is not None:
            record = reader.audit_record(item.request_id)
            # Another model's request is answered as an unknown one: ids reveal nothing.
            if record is None or record.model != model or record.shadow:
                raise HistoryNotFoundError(
                    f"no prediction of {model!r} with request_id {shown(item.request_id)!r} "
                    "(yet: records reach the store within a second, later while it is "
                    "unreachable)",
                    {"request_id": shown(item.request_id)},
                )
            return record
        assert item.client_request_id is not None
        found = reader.audit_by_client_id(model, item.client_request_id)
        if not found:
            raise HistoryNotFoundError(
                f"no prediction of {model!r} with client_request_id "
                f"{shown(item.client_request_id)!r}",
                {"client_request_id": shown(item.client_request_id)},
            )
        if len(found) > 1:
            raise ConflictError(
                f"client_request_id {shown(item.client_request_id)!r} names {len(found)} "
                "requests; send the request_id",
                {"request_ids": [r.request_id for r in found[:_AMBIGUOUS_SHOWN]]},
            )
        return found[0]


def _check_scorable(record: AuditRow) -> None:
    why = None
    if record.as_of is not None:
        why = "it was an as-of request (outcomes judge what was served)"
    elif record.status != 200:
        why = f"it was answered {record.status}, not with predictions"
    elif record.predictions is None:
        why = "its predictions were not recorded (audit_include_predictions is off)"
    if why is not None:
        raise NotScorableError(
            f"request {record.request_id} cannot be scored: {why}",
            {"request_id": record.request_id},
        )
