"""A JSON-lines file rotated by size (`audit.jsonl`, `.1` ... `.N`), written in whole batches."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO

__all__ = ["RotatingFile"]


class RotatingFile:
    """Appends batches; before a batch would push the file past `max_bytes`, rotates it.

    `write` may run on a worker thread while `close` runs on the event loop: a lock keeps
    batches whole and in order.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = path.open("ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file is None:
                raise OSError(f"{self.path} is closed")
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            assert self._file is not None
            self._file.write(data)
            self._file.flush()
            self._size += len(data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        name = self.path.name
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{name}.1"))
        else:
            self.path.unlink()
        self._file = self.path.open("ab")
        self._size = 0
