"""The spool: the local, durable half of the PostgreSQL sink.

Every record bound for PostgreSQL is first appended here (one folder per stream: audit,
journal, outcomes), and only then shipped; the shipper commits how far the database has
taken it. So a record "acknowledged to the spool" survives the gateway being killed (it is in
the file; with `fsync`, also the machine losing power), a database outage only makes the spool
grow, and after either the shipper resumes from the committed position, in order. Records
shipped but not yet committed when the process died are shipped again; the database ignores
them (idempotent by request id).

Layout: `<folder>/<sequence>.jsonl` segments of whole lines, rolled at `segment_bytes`;
`<folder>/committed` holds "sequence offset" of the first byte not yet in the database.
Segments wholly before it are deleted. `append` refuses (OSError, ENOSPC) a batch that would
take what is not yet shipped past `max_bytes` (an empty spool takes any batch): that is the
spool being full, and the audit writer treats it as a full disk.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Position", "Spool"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_COMMITTED = "committed"


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


class Spool:
    def __init__(
        self,
        folder: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20,
        fsync: bool = False,
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        self._committed = self._read_committed()
        segments = self._segments()
        self._segment = max(segments[-1] if segments else 0, self._committed.segment, 1)
        self._fd = os.open(self._path(self._segment), _FLAGS, 0o644)
        self._size = self._cut_torn_line()
        self._sizes = {s: self._path(s).stat().st_size for s in self._segments()}

    # -- the writer's side ------------------------------------------------------------------

    def append(self, data: bytes) -> None:
        """Append whole lines, or raise OSError and leave the spool as it was."""
        if not data:
            return
        with self._lock:
            if self._fd < 0:
                raise OSError(errno.EBADF, f"spool {self.folder} is closed")
            pending = self._pending()
            # An empty spool takes any batch: a batch larger than max_bytes would otherwise
            # be refused for ever (the audit writer retries held records as one batch).
            if pending and pending + len(data) > self.max_bytes:
                raise OSError(
                    errno.ENOSPC,
                    f"spool full ({self.max_bytes} bytes not yet shipped to the database)",
                )
            if self._size and self._size + len(data) > self.segment_bytes:
                self._roll()
            start = self._size
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, start)  # never leave a torn line behind
                raise
            self._size = start + len(data)
            self._sizes[self._segment] = self._size

    def _cut_torn_line(self) -> int:
        """A process killed in the middle of a write may leave half a line at the end of the
        last segment: cut it, so the next append does not glue a record to it."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        with open(self._path(self._segment), "rb") as f:
            f.seek(max(0, size - 65536))
            tail = f.read()
        if tail.endswith(b"\n"):
            return size
        keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        os.ftruncate(self._fd, keep)
        return keep

    def _roll(self) -> None:
        fd = os.open(self._path(self._segment + 1), _FLAGS, 0o644)
        os.close(self._fd)
        self._fd = fd
        self._segment += 1
        self._size = 0
        self._sizes[self._segment] = 0

    # -- the shipper's side -----------------------------------------------------------------

    def end(self) -> Position:
        """Where the next append will go: everything before it is in the spool."""
        with self._lock:
            return Position(self._segment, self._size)

    @property
    def committed(self) -> Position:
        return self._committed

    def pending_bytes(self) -> int:
        with self._lock:
            return self._pending()

    def _pending(self) -> int:
        c = self._committed
        return sum(size for s, size in self._sizes.items() if s >= c.segment) - (
            c.offset if c.segment in self._sizes else 0
        )

    def read(self, max_bytes: int) -> tuple[Position, bytes] | None:
        """Whole lines from the committed position (one segment at a time), and the position
        after them; None when nothing is waiting."""
        with self._lock:
            c = self._committed
            last, size = self._segment, self._size
        segment, offset = c.segment, c.offset
        while True:
            if segment == last and offset >= size:
                return None
            try:
                with open(self._path(segment), "rb") as f:
                    f.seek(offset)
                    chunk = f.read(max_bytes)
            except FileNotFoundError:
                chunk = b""
            end = chunk.rfind(b"\n")
            if end >= 0:
                return Position(segment, offset + end + 1), chunk[: end + 1]
            if segment < last and len(chunk) < max_bytes:
                # This segment is done (the writer rolled past it): move on.
                segment, offset = segment + 1, 0
                self._commit(Position(segment, 0))
                continue
            if len(chunk) >= max_bytes:
                raise ValueError(f"spool {self.folder}: a line longer than {max_bytes} bytes")
            return None  # a batch being written: next time

    def commit(self, position: Position) -> None:
        """Everything before `position` is in the database."""
        self._commit(position)

    def _commit(self, position: Position) -> None:
        tmp = self.folder / f".{_COMMITTED}.tmp"
        tmp.write_text(f"{position.segment} {position.offset}\n")
        if self.fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, self.folder / _COMMITTED)
        with self._lock:
            self._committed = position
            done = [s for s in self._sizes if s < position.segment]
            for s in done:
                del self._sizes[s]
        for s in done:
            self._path(s).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    # -- files ------------------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.folder / f"{segment:012d}.jsonl"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.folder.glob("*.jsonl") if p.stem.isdigit())

    def _read_committed(self) -> Position:
        try:
            segment, offset = (self.folder / _COMMITTED).read_text().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            segments = self._segments()
            return Position(segments[0] if segments else 1, 0)
