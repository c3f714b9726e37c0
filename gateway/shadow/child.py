"""The shadow process: loads shadow versions itself and predicts what the gateway sends it.

Started by process.py as `python -m gateway.shadow.child CONFIG_JSON`, at the priority the
config names (priority.py: SCHED_IDLE by default), so on a CPU the gateway keeps busy it
only gets what the gateway leaves. Frames on stdin (4-byte big-endian length, then a pickle
from the gateway that started it: a `ShadowCall`) are answered on the stdout it was given
(length, then a msgpack `ShadowResult`: never a pickle, so nothing the process does can run
code in the gateway). Its fd 1 is pointed at stderr first, so a library that prints cannot
corrupt the frames. It exits when stdin closes (the gateway stopped or died).

A version is loaded on its first call with the gateway's own load rules (the allowlist,
`unpickle_allow`, `unpickle_trust_signed`), the `MAX_VERSIONS` most recently used are kept.
Loads run on a thread started before the process lowers its priority (Linux priorities are
per thread), so they run at the normal priority: a load is a one-off second or two of CPU,
as the gateway's own load of the same version, and at idle priority on a saturated CPU it
could take many minutes; only predictions yield.
A call's seconds are this process's CPU seconds (`time.process_time`), not wall time: at
idle priority the wall time would measure the wait for an idle CPU, not the model. The
timeout applies to the same seconds.
"""

from __future__ import annotations

import functools
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any, BinaryIO

import msgspec

from gateway.errors import GatewayError
from gateway.pool.loaded import LoadedVersion, Loader, load_version
from gateway.schema.request_schema import InputBatch
from gateway.shadow.priority import ShadowPriority, lower_priority
from registry_sync.logs import configure_logging
from registry_sync.runtimes.safe_load import LoadPolicy
from registry_sync.sync.snapshot import DesiredEntry

__all__ = [
    "HEADER",
    "MAX_VERSIONS",
    "ChildConfig",
    "ShadowAnswers",
    "ShadowCall",
    "ShadowCalls",
    "ShadowResult",
    "main",
]

HEADER = struct.Struct(">I")
MAX_VERSIONS = 4


class ChildConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the shadow process needs of the gateway's settings (its argv, as JSON)."""

    allow_non_finite: bool = False
    max_rows: int = 10_000
    unpickle_allow: tuple[str, ...] = ()
    unpickle_trust_signed: bool = False
    timeout_s: float = 1.0
    priority: ShadowPriority = "idle"
    log_level: str = "info"


class ShadowCall(msgspec.Struct, frozen=True, kw_only=True):
    """One shadow prediction: the version (as the sync described it) and its inputs (None:
    only load the version, before traffic needs it)."""

    entry: DesiredEntry
    batch: InputBatch | None


class ShadowCalls(msgspec.Struct, frozen=True, kw_only=True):
    """One frame: the calls queued while the previous frame was answered (one pickle, so
    the version entry they share is written once)."""

    seq: int
    calls: list[ShadowCall]


class ShadowResult(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One call's answer: error kind (None: predicted) and detail, the validated
    predictions, the call's CPU seconds, and the seconds spent loading the version first."""

    kind: str | None
    detail: str
    predictions: list[Any] | None
    shadow_s: float
    load_s: float


class ShadowAnswers(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """The answers to frame `seq`, in its calls' order."""

    seq: int
    results: list[ShadowResult]


class NormalPriorityLoader:
    """Calls `loader` on its own thread: one started before the process lowered its own
    priority, which keeps the normal one."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._calls: queue.SimpleQueue[tuple[DesiredEntry, Future[LoadedVersion]]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._run, name="shadow-loader", daemon=True).start()

    def _run(self) -> None:
        while True:
            entry, future = self._calls.get()
            try:
                future.set_result(self._loader(entry))
            except BaseException as exc:  # handed to the caller, which counts it
                future.set_exception(exc)

    def __call__(self, entry: DesiredEntry) -> LoadedVersion:
        future: Future[LoadedVersion] = Future()
        self._calls.put((entry, future))
        return future.result()


class Versions:
    """The loaded shadow versions, most recently used last."""

    def __init__(self, loader: Loader, max_versions: int = MAX_VERSIONS) -> None:
        self.loader = loader
        self.max_versions = max_versions
        self._loaded: OrderedDict[tuple[str, str, str], LoadedVersion] = OrderedDict()

    def get(self, entry: DesiredEntry) -> tuple[LoadedVersion, float]:
        key = (entry.model, entry.version, entry.digest)
        lv = self._loaded.get(key)
        if lv is not None:
            self._loaded.move_to_end(key)
            return lv, 0.0
        started = time.perf_counter()
        lv = self._loaded[key] = self.loader(entry)
        while len(self._loaded) > self.max_versions:
            _, old = self._loaded.popitem(last=False)
            old.close()
        return lv, time.perf_counter() - started


def answer(call: ShadowCall, versions: Versions, timeout_s: float) -> ShadowResult:
    """Load (if needed), predict, validate: every failure becomes an error kind."""
    try:
        lv, load_s = versions.get(call.entry)
    except Exception as exc:
        return ShadowResult(
            kind="error", detail=f"load: {exc}", predictions=None, shadow_s=0.0, load_s=0.0
        )
    batch = call.batch
    if batch is None:
        return ShadowResult(kind=None, detail="", predictions=None, shadow_s=0.0, load_s=load_s)
    t = time.process_time()
    try:
        out = lv.predict(batch)
    except GatewayError as exc:
        return ShadowResult(
            kind="input_mismatch", detail=str(exc), predictions=None, shadow_s=0.0,
            load_s=load_s,
        )  # fmt: skip
    except Exception as exc:
        return ShadowResult(
            kind="error", detail=f"{type(exc).__name__}: {exc}", predictions=None,
            shadow_s=0.0, load_s=load_s,
        )  # fmt: skip
    shadow_s = time.process_time() - t
    if shadow_s > timeout_s:
        return ShadowResult(
            kind="timeout", detail=f"{shadow_s:.3f} s of CPU", predictions=None,
            shadow_s=shadow_s, load_s=load_s,
        )  # fmt: skip
    try:
        predictions = lv.schema.predictions(out, batch.rows)
    except ValueError as exc:
        return ShadowResult(
            kind="invalid_output", detail=str(exc), predictions=None,
            shadow_s=shadow_s, load_s=load_s,
        )  # fmt: skip
    return ShadowResult(
        kind=None, detail="", predictions=predictions, shadow_s=shadow_s, load_s=load_s
    )


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def loader_of(config: ChildConfig) -> Loader:
    """The gateway's load rules, as the settings gave them."""
    return functools.partial(
        load_version,
        allow_non_finite=config.allow_non_finite,
        max_rows=config.max_rows,
        policy=LoadPolicy(extra=config.unpickle_allow),
        trust_signed=config.unpickle_trust_signed,
    )


def serve(config: ChildConfig, inp: BinaryIO, out: BinaryIO, loader: Loader | None = None) -> None:
    """Answer calls from `inp` on `out` until `inp` ends."""
    versions = Versions(loader or loader_of(config))
    encode = msgspec.msgpack.Encoder().encode
    while True:
        header = _read_exactly(inp, HEADER.size)
        if header is None:
            return
        body = _read_exactly(inp, HEADER.unpack(header)[0])
        if body is None:
            return
        frame: ShadowCalls = pickle.loads(body)  # from the gateway that started this process
        results = [answer(call, versions, config.timeout_s) for call in frame.calls]
        payload = encode(ShadowAnswers(seq=frame.seq, results=results))
        out.write(HEADER.pack(len(payload)) + payload)
        out.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config = msgspec.json.decode(args[0].encode(), type=ChildConfig)
    # Ctrl-C reaches the whole process group: the gateway decides when this process ends
    # (it closes stdin), so an interrupt must not kill it mid-call first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library's print() goes to stderr, never into the frames
    configure_logging(config.log_level)
    loader = NormalPriorityLoader(loader_of(config))  # its thread keeps this priority
    lower_priority(config.priority)
    serve(config, sys.stdin.buffer, frames, loader)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
