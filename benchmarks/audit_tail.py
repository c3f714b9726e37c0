"""Where the audit record is encoded, measured: the tail and CPU of each place (issue 17).

    .venv/bin/python -m benchmarks.audit_tail [--cache CACHE] [--variants off,submit,...]
        [--connections 1,16] [--seconds 5] [--gc-off]

One server per (variant, connections): `stageserve serve` on core 0 through this module's
launcher, wrk on core 1 (single-row `linear`, 2 s warm-up, then `--seconds` measured); CPU per
request is the server's process tree (the `process` variant's child included). Variants:

- `off`: no audit file;
- `submit`: the shipped writer (each record encoded when submitted, the flush a join, the
  write in 64 KiB chunks on the writer thread);
- `loop-slices`: the writer before: entries held until the flush, encoded 16 per loop turn,
  one `os.write` per flush;
- `thread`: entries held until the flush, then encoded by the writer thread 16 at a time,
  `time.sleep(0)` between units to offer the GIL to the loop;
- `process`: each entry msgpacked at submit (inputs as raw float64 bytes), one frame per flush
  over a pipe to a child process that encodes the lines and writes the file.

The last three are the alternatives, installed by patching the writer in the launcher (only
single-row numeric inputs and primary records, what this benchmark sends). `--gc-off` runs
every server with `gc.disable()` to take the collector out of the comparison. Run it under
`flock -x` on a quiet machine: it measures tails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ("off", "submit", "loop-slices", "thread", "process")
_SLICE = 16


# -- the alternatives, patched into the writer ---------------------------------------------


def _hold_entries(writer_cls: Any) -> None:
    """submit keeps the entry (as the writer before did) instead of encoding it."""
    writer_cls.submit = lambda self, entry: self._pending.append(entry)

    def take_all(self: Any) -> tuple[bytes, int]:
        items, self._pending = self._pending, []
        return b"".join(self._line(e) for e in items), len(items)

    writer_cls._take = take_all


def install_loop_slices() -> None:
    from gateway.telemetry import audit, audit_file

    _hold_entries(audit.AuditWriter)
    audit_file._CHUNK_BYTES = 1 << 40  # type: ignore[attr-defined]  # one write per flush

    async def run(self: Any) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval_s)
            if self._pending:
                items, self._pending = self._pending, []
                parts = []
                for start in range(0, len(items), _SLICE):
                    parts.append(b"".join(self._line(e) for e in items[start : start + _SLICE]))
                    await asyncio.sleep(0)
                data = b"".join(parts)
                await loop.run_in_executor(self._executor, self._write, data, len(items))
            self._rounds += 1

    audit.AuditWriter.run = run  # type: ignore[method-assign]


def install_thread() -> None:
    from gateway.telemetry import audit

    _hold_entries(audit.AuditWriter)

    def encode_and_write(self: Any, items: list[Any]) -> None:
        parts = []
        for start in range(0, len(items), _SLICE):
            parts.append(b"".join(self._line(e) for e in items[start : start + _SLICE]))
            time.sleep(0)  # releases the GIL: the loop may take it between units
        count = len(items)
        items.clear()
        self._write(b"".join(parts), count)

    async def run(self: Any) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval_s)
            if self._pending:
                items, self._pending = self._pending, []
                await loop.run_in_executor(self._executor, encode_and_write, self, items)
            self._rounds += 1

    audit.AuditWriter.run = run  # type: ignore[method-assign]


def install_process() -> None:
    import msgspec

    from gateway.telemetry import audit

    encoder = msgspec.msgpack.Encoder()

    def submit(self: Any, e: Any) -> None:
        batch = e[9]
        inputs = None if batch is None else (batch.names, batch.matrix.tobytes(), batch.rows)
        self._pending.append(encoder.encode((*e[:9], inputs, *e[10:])))

    def open_(self: Any) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.audit_tail", "child", str(self.path)],
            stdin=subprocess.PIPE,
            cwd=HERE.parent,
        )

    async def run(self: Any) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        loop = asyncio.get_running_loop()
        fd = self._child.stdin.fileno()

        def send(frame: bytes) -> None:
            view = memoryview(frame)
            while view:
                view = view[os.write(fd, view) :]

        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval_s)
            if self._pending:
                items, self._pending = self._pending, []
                frame = encoder.encode(items)
                await loop.run_in_executor(
                    self._executor, send, struct.pack("<I", len(frame)) + frame
                )
            self._rounds += 1

    def close(self: Any) -> None:
        child = getattr(self, "_child", None)
        if child is not None:
            child.stdin.close()
            child.wait()

    audit.AuditWriter.submit = submit  # type: ignore[method-assign]
    audit.AuditWriter.open = open_  # type: ignore[method-assign]
    audit.AuditWriter.run = run  # type: ignore[method-assign]
    audit.AuditWriter.close = close  # type: ignore[method-assign]


def child(path: str) -> None:
    """The `process` variant's other end: frames of msgpacked entries in, lines out."""
    import msgspec
    import numpy as np

    from gateway.schema.request_schema import InputBatch
    from gateway.telemetry.audit import AuditWriter

    writer = AuditWriter(path)
    writer.open()
    decoder = msgspec.msgpack.Decoder()
    stdin = sys.stdin.buffer
    while len(head := stdin.read(4)) == 4:
        (size,) = struct.unpack("<I", head)
        lines = []
        for raw in decoder.decode(stdin.read(size)):
            e = decoder.decode(raw)
            if e[9] is not None:
                names, data, rows = e[9]
                matrix = np.frombuffer(data).reshape(rows, len(names))
                e[9] = InputBatch(tuple(names), rows, matrix, None)
            lines.append(writer._line(tuple(e)))
        writer._write(b"".join(lines), len(lines))
    writer.close()


def serve(variant: str, argv: list[str]) -> None:
    """The launcher: patch the writer for `variant`, then run `stageserve` with `argv`."""
    if os.environ.get("AUDIT_TAIL_GC_OFF"):
        gc.disable()
    installers = {
        "loop-slices": install_loop_slices,
        "thread": install_thread,
        "process": install_process,
    }
    if variant in installers:
        installers[variant]()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from gateway.cli import main as stageserve

    sys.exit(stageserve(argv))


# -- the measurement -----------------------------------------------------------------------


def measure(
    variant: str, connections: int, *, cache: Path, work: Path, seconds: float, gc_off: bool
) -> dict[str, Any]:
    from benchmarks.fixtures import body_for
    from benchmarks.loadgen import ensure_wrk, run_load
    from benchmarks.procs import Launch, Server, cpu_seconds, free_port

    wrk, _ = ensure_wrk(False)
    port = free_port()
    audit = work / f"audit-{variant}-c{connections}.jsonl"
    argv = [sys.executable, "-m", "benchmarks.audit_tail", "serve", variant, "--"]
    argv += ["serve", "--host", "127.0.0.1", "--port", str(port), "--cache", str(cache)]
    argv += ["--log-level", "warning"]
    if variant != "off":
        argv += ["--audit-path", str(audit)]
    env = {"AUDIT_TAIL_GC_OFF": "1"} if gc_off else {}
    launch = Launch(variant, "stageserve", argv, {"linear": "/predict/linear"}, port, HERE.parent)
    launch.env.update(env)
    launch.ready_body = body_for("stageserve", 1, "linear")
    server = Server(launch, work / f"server-{variant}-c{connections}.log", cpu=0)
    body = launch.ready_body
    server.start()
    try:
        url = server.url("linear")
        run_load(wrk, url, body, connections=connections, duration_s=2, work=work)
        before = cpu_seconds(server.pid)
        result = run_load(wrk, url, body, connections=connections, duration_s=seconds, work=work)
        cpu = cpu_seconds(server.pid) - before
    finally:
        server.stop()
    return {
        "variant": variant,
        "connections": connections,
        "rps": result.rps,
        "cpu_us": cpu / max(result.requests, 1) * 1e6,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
    }


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        rest = sys.argv[3:]
        serve(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
        return
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, help="a synced cache (default: build the fixtures)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--connections", default="1,16")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--gc-off", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="stageserve-audit-tail-") as tmp:
        work = Path(tmp)
        cache = args.cache
        if cache is None:
            from benchmarks.fixtures import build_fixtures

            cache = build_fixtures(work).cache
        print(f"load average {os.getloadavg()}; gc {'off' if args.gc_off else 'on'}")
        print("| variant | conns | req/s | CPU µs/req | p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for conns in (int(c) for c in args.connections.split(",")):
            for variant in args.variants.split(","):
                r = measure(
                    variant, conns, cache=cache, work=work, seconds=args.seconds, gc_off=args.gc_off
                )
                print(
                    f"| {variant} | {conns} | {r['rps']:,.0f} | {r['cpu_us']:.1f} | "
                    f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['errors']} |",
                    flush=True,
                )
        print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
