"""A real PostgreSQL for tests: Debian's `initdb`/`pg_ctl`, on 127.0.0.1, started once per
session, one fresh database per test; tests may stop and restart it (an outage).

PostgreSQL refuses to run as root, and CI runs as root: there the server runs as `nobody`
(`runuser`), in a folder under /tmp that `nobody` owns. As any other user it runs as that
user. `.ci/run` installs the postgresql package when `initdb` is missing.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import free_port

__all__ = ["Postgres", "postgres"]

USER = "stageserve"


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not versions:
        pytest.fail(
            "PostgreSQL is not installed (no pg_ctl): `apt-get install postgresql` "
            "(.ci/run does it)"
        )
    return Path(versions[-1]).parent


@dataclass
class Postgres:
    root: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=_bindir)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self, *args: str) -> list[str]:
        # root may not run PostgreSQL: run it as nobody (who owns the folder).
        return ["runuser", "-u", "nobody", "--", *args] if os.geteuid() == 0 else list(args)

    def _run(self, *args: str, timeout_s: float = 120) -> None:
        done = subprocess.run(
            self._as_owner(*args), capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}\n{self.log()}")

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody", "nogroup")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER,
            "-E", "UTF8", "--no-sync", "--locale", "C.UTF-8",
        )  # fmt: skip

    def start(self) -> None:
        # fsync off: tests stop the server on purpose, never the machine; 127.0.0.1 only.
        options = f"-k {self.root} -h 127.0.0.1 -p {self.port} -c fsync=off -c max_connections=50"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`mode="immediate"`: as if it crashed (no checkpoint, connections cut)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def query(self, url: str, sql: str, *args: Any) -> list[Any]:
        import psycopg

        with psycopg.connect(url) as conn:
            return list(conn.execute(sql, args).fetchall())

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="stageserve-pg-", dir="/tmp"))
    server = Postgres(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # a test left it stopped
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
