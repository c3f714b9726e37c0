"""Admission: per-model limits on concurrent inferences and an inference timeout.

Overload is answered, not queued forever. With `max_concurrent_inferences` (or a model's
`inference_limits.<model>.max_concurrent`) a request to a model that already has that many
requests admitted and not yet answered by the model gets `OverloadedError` at once (503 +
Retry-After), before any inference work; with `inference_timeout_s` (or the model's
`timeout_s`) a request that waited that long from its admission without a result gets
`InferenceTimeoutError` (504); both are counted in `stageserve_inference_refused_total`.
The clients that are admitted keep the latency of a server that is not overloaded: at most
`max_concurrent` of them share the model, the rest are told to come back instead of queueing
in front of them.

Where requests wait. A version answered inline (on the event loop) never awaits, so its
requests would never overlap and a count of them would never pass 1: the overload queue is
the event loop's, requests whose bodies are read and whose handlers have not run yet. So a
gated inline request first yields one loop turn, counted as admitted: every request already
read reaches admission (and is counted) before the first of them runs the model, and the
turn's wait is what the timeout measures (a request whose turn came after its deadline is
answered 504 without running the model). Requests run on the inference threads or in a
batch (pool/batching.py) await anyway and are counted while they do.

What a timeout leaves running. An inline call is never interrupted (it is under the inline
budget, ~1 ms, by construction). A call on the inference threads that has not started is
cancelled; one already running finishes, and its slot in the limit stays taken until it does,
so timed-out work never piles up on the threads beyond the limit. A batch goes on for its
other callers; the timed-out caller's slot is freed when it is answered 504.

A model without a limit or a timeout has no `Gate`: its requests pay nothing for this.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gateway.errors import InferenceTimeoutError, OverloadedError
from gateway.settings import Settings

__all__ = ["Gate", "Gates", "with_gates"]


class Gate:
    """One model's limits and counts (shared by its versions: a swap does not double the
    limit while the old version finishes)."""

    __slots__ = ("inflight", "max_concurrent", "model", "on_refused", "timeout_s")

    def __init__(
        self,
        model: str,
        *,
        max_concurrent: int,
        timeout_s: float,
        on_refused: Callable[[str, str], None],
    ) -> None:
        self.model = model
        # 0: no limit (math.inf keeps the check one comparison).
        self.max_concurrent: float = max_concurrent or math.inf
        # 0: no timeout.
        self.timeout_s: float = timeout_s or math.inf
        self.inflight = 0
        # Told (model, reason) of every refusal: stageserve_inference_refused_total.
        self.on_refused = on_refused

    def enter(self) -> None:
        """Count one admitted request, or raise OverloadedError (counted) at the limit."""
        if self.inflight >= self.max_concurrent:
            self.on_refused(self.model, OverloadedError.code)
            raise OverloadedError(self.model, int(self.max_concurrent))
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1

    def timed_out(self) -> InferenceTimeoutError:
        """The error for a request past its deadline (counted)."""
        self.on_refused(self.model, InferenceTimeoutError.code)
        return InferenceTimeoutError(self.model, self.timeout_s)


class Gates:
    """The gate of each model that has a limit or a timeout (settings), built on first use."""

    def __init__(self, settings: Settings, on_refused: Callable[[str, str], None]) -> None:
        self._default_limit = settings.max_concurrent_inferences
        self._default_timeout_s = settings.inference_timeout_s
        self._rules = settings.inference_limits
        self._on_refused = on_refused
        self._gates: dict[str, Gate | None] = {}

    @property
    def any(self) -> bool:
        """Whether any model can have a gate (else loads need no wrapping)."""
        return bool(self._default_limit or self._default_timeout_s or self._rules)

    def of(self, model: str) -> Gate | None:
        if model in self._gates:
            return self._gates[model]
        rule = self._rules.get(model)
        limit = self._default_limit
        timeout_s = self._default_timeout_s
        if rule is not None:
            limit = rule.max_concurrent if rule.max_concurrent is not None else limit
            timeout_s = rule.timeout_s if rule.timeout_s is not None else timeout_s
        gate = None
        if limit or timeout_s:
            gate = Gate(
                model,
                max_concurrent=limit,
                timeout_s=timeout_s,
                on_refused=self._on_refused,
            )
        self._gates[model] = gate
        return gate


def with_gates(loader: Callable[[Any], Any], gates: Gates) -> Callable[[Any], Any]:
    """A loader whose versions carry their model's gate (None: not gated)."""

    def load(entry: Any) -> Any:
        loaded = loader(entry)
        loaded.gate = gates.of(loaded.model)
        return loaded

    return load
