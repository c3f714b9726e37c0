"""The gateway's end of the shadow process (child.py): start it, send calls, read answers.

Everything runs on the event loop without blocking it: the calls go out through asyncio's
pipe transport (buffered, never a blocking write), the answers come back through a reader
task that resolves each call's future. The process is started when shadowing starts and
again after it died (a crash, an out-of-memory kill): a call it did not answer fails with
`ShadowProcessGoneError`, counted by the worker as an `error`. A frame unanswered after the
process spent `guard_s` seconds of CPU on it (a model stuck in a loop) gets the process
killed and restarted; CPU, not wall time: at idle priority on a busy CPU a process that
waits for the CPU is not stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sys
from pathlib import Path

import msgspec

from gateway.shadow.child import (
    HEADER,
    ChildConfig,
    ShadowAnswers,
    ShadowCall,
    ShadowCalls,
    ShadowResult,
)

__all__ = ["ShadowProcess", "ShadowProcessGoneError"]

log = logging.getLogger("stageserve.shadow")


def cpu_seconds(pid: int) -> float | None:
    """The CPU seconds (user + system) process `pid` has used; None where /proc is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ShadowProcessGoneError(Exception):
    """The shadow process ended (or was killed) before answering a call."""


class ShadowProcess:
    def __init__(self, config: ChildConfig, *, guard_s: float = 60.0) -> None:
        self.config = config
        self.guard_s = guard_s
        self.starts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[list[ShadowResult]]] = {}
        self._seq = 0
        self._decode = msgspec.msgpack.Decoder(ShadowAnswers).decode

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the process (if it is not running)."""
        if self._proc is not None and self._proc.returncode is None:
            return
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.shadow.child",
            msgspec.json.encode(self.config).decode(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.starts += 1
        self._reader = asyncio.create_task(self._read(self._proc), name="shadow-process-reader")

    async def predict(self, calls: list[ShadowCall]) -> list[ShadowResult]:
        """The shadow process's answers to `calls` (sent as one frame), in order; raises
        ShadowProcessGoneError."""
        try:
            await self.start()
        except OSError as exc:
            raise ShadowProcessGoneError(f"cannot start: {exc}") from None
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[list[ShadowResult]] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future
        body = pickle.dumps(ShadowCalls(seq=seq, calls=calls), protocol=5)
        try:
            proc.stdin.write(HEADER.pack(len(body)) + body)
            started = cpu_seconds(proc.pid)
            while True:
                done, _ = await asyncio.wait({future}, timeout=self.guard_s)
                if done:
                    return future.result()
                now = cpu_seconds(proc.pid)
                if started is None or now is None or now - started > self.guard_s:
                    break
            log.error("the shadow process spent %.0f s on a call: restarting it", self.guard_s)
            await self._kill()
            raise ShadowProcessGoneError(f"no answer after {self.guard_s:.0f} s of CPU")
        except (ConnectionError, RuntimeError) as exc:  # the pipe closed under the write
            raise ShadowProcessGoneError(str(exc)) from None
        finally:
            self._waiting.pop(seq, None)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        stdout = proc.stdout
        assert stdout is not None
        try:
            while True:
                header = await stdout.readexactly(HEADER.size)
                answers = self._decode(await stdout.readexactly(HEADER.unpack(header)[0]))
                future = self._waiting.get(answers.seq)
                if future is not None and not future.done():
                    future.set_result(answers.results)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the process ended
        except msgspec.DecodeError:
            log.error("the shadow process sent a malformed answer: restarting it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        code = await proc.wait()
        if self._proc is proc:
            self._proc = None
        gone = [f for f in self._waiting.values() if not f.done()]
        if gone:
            log.warning("the shadow process exited (%s), %d call(s) unanswered", code, len(gone))
        for future in gone:
            future.set_exception(ShadowProcessGoneError(f"exit status {code}"))

    async def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if self._reader is not None:
            await self._reader

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Close its stdin (it exits after the call in progress); kill it after `timeout_s`."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            log.warning("the shadow process did not exit in %.0f s: killed", timeout_s)
            await self._kill()
        if self._reader is not None:
            await self._reader
            self._reader = None
