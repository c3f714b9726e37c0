"""A small real filesystem that a test can fill up and free again: a size-limited tmpfs.

Mounting needs root (CAP_SYS_ADMIN), which the project's machines and CI have. Where it is
missing, the same test runs on the narrowest real seam instead: the server process's
RLIMIT_FSIZE, lowered to the audit file's current size (`fill`) and raised again (`free`), so
its writes fail with a real EFBIG from the kernel, partial writes included. `kind` says which.

`tmpfs_launcher` gives one child process a small tmpfs of its own without root: the process is
started in an unprivileged user+mount namespace that mounts it first (the sync's full-disk test).
"""

from __future__ import annotations

import errno
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["SmallDisk", "tmpfs_launcher"]

_MOUNT = 'mount -t tmpfs -o size="$1"k stageserve-test "$2" && shift 2 && exec "$@"'


class SmallDisk:
    """`with SmallDisk(tmp_path / "disk") as disk:` → files under `disk.path`; `fill()`,
    `free()`; after `attach(pid, file)` the fallback can limit the writing process."""

    def __init__(self, path: Path, size_kib: int = 512) -> None:
        self.path = path
        self.size_kib = size_kib
        self.kind = "tmpfs"
        self._filler = path / "filler"
        self._pid: int | None = None
        self._file: Path | None = None

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_kib}k", "tmpfs", str(self.path)],
            capture_output=True,
            check=False,
        )
        if mount.returncode != 0:
            self.kind = "rlimit_fsize"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)

    def attach(self, pid: int, file: Path) -> None:
        """The process whose writes to `file` the fallback must make fail."""
        self._pid, self._file = pid, file

    def fill(self) -> None:
        """No more space for the writer (tmpfs: every block taken by a filler file)."""
        if self.kind == "tmpfs":
            with self._filler.open("ab", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
            return
        assert self._pid is not None and self._file is not None, "attach() first"
        size = self._file.stat().st_size if self._file.exists() else 0
        _, hard = resource.prlimit(self._pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self._pid, resource.RLIMIT_FSIZE, (size, hard))

    def free(self) -> None:
        """Space again."""
        if self.kind == "tmpfs":
            self._filler.unlink(missing_ok=True)
            return
        assert self._pid is not None
        _, hard = resource.prlimit(self._pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self._pid, resource.RLIMIT_FSIZE, (hard, hard))


def tmpfs_launcher(mountpoint: Path, *, size_kib: int) -> list[str] | None:
    """A command prefix that runs a program with a `size_kib` tmpfs mounted on `mountpoint`
    (seen by that program only), or None where user namespaces cannot mount one."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    prefix = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", _MOUNT, "sh"]
    with tempfile.TemporaryDirectory() as probe:
        try:
            done = subprocess.run(
                [*prefix, "16", probe, "true"], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
    if done.returncode != 0:
        return None
    return [*prefix, str(size_kib), str(mountpoint)]
