"""Drive the real `gto` (its Python API to write, its CLI to read) on a test repository.

gto's tags are dated with the current time; `gto_clock()` replaces that clock (for gto
only) so a test decides which events share a second, deterministically.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

__all__ = [
    "GTO_EXE",
    "GtoClock",
    "commit_package",
    "gto_cli",
    "gto_clock",
    "gto_history",
    "gto_registry",
    "gto_stage",
]

GTO_EXE = Path(sys.executable).parent / "gto"


class GtoClock:
    """A fake `time` module for dulwich's tag module: `time()` returns `now`."""

    def __init__(self, now: int) -> None:
        self.now = now

    def time(self) -> float:
        return float(self.now)


@contextlib.contextmanager
def gto_clock(start: int = 1_700_000_000) -> Iterator[GtoClock]:
    import importlib

    # By module name: `dulwich.porcelain.tag` the attribute may be a function, not the module.
    dulwich_tag = importlib.import_module("dulwich.porcelain.tag")
    clock = GtoClock(start)
    # pygit2 (which scmrepo may prefer) cannot date a tag and steps aside when
    # GIT_COMMITTER_DATE is set; dulwich then takes only the zone from it and the time from
    # our clock.
    with (
        mock.patch.object(dulwich_tag, "time", clock),
        mock.patch.dict(os.environ, {"GIT_COMMITTER_DATE": f"{start} +0000"}),
    ):
        yield clock


def commit_package(repo: Path, model: str, content: str, when: int, *, listed: bool = True) -> str:
    """Commit a change under models/MODEL (and list it in artifacts.yaml); returns the sha."""
    folder = repo / "models" / model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.txt").write_text(content)
    if listed:
        index = repo / "artifacts.yaml"
        text = index.read_text() if index.exists() else ""
        if f"\n{model}:" not in f"\n{text}":
            index.write_text(f"{text}{model}:\n  type: model\n  path: models/{model}\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": f"@{when} +0000",
        "GIT_COMMITTER_DATE": f"@{when} +0000",
    }
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "-m", f"{model} {content}"], check=True, env=env
    )
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, env=env, capture_output=True
    )
    return done.stdout.decode().strip()


def gto_cli(*args: str) -> tuple[int, str]:
    """Run gto's own click CLI in-process (the reference), returning (exit code, output)."""
    from click.testing import CliRunner
    from gto.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def gto_stage(repo: Path, model: str, stage: str) -> str | None:
    """What `gto show MODEL#STAGE --json` says serves the stage (None: nothing)."""
    code, out = gto_cli("show", "-r", str(repo), f"{model}#{stage}", "--json")
    if code != 0:
        return None  # e.g. "Cannot find artifact": nothing is in the stage
    versions: list[dict[str, Any]] = json.loads(out)
    assert len(versions) <= 1
    return versions[0]["version"] if versions else None


def gto_registry(repo: Path) -> dict[str, Any]:
    """`gto show --json`: {model: {"version": latest, "stage": {stage: version}, ...}}."""
    code, out = gto_cli("show", "-r", str(repo), "--json")
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


def gto_history(repo: Path, model: str) -> list[dict[str, Any]]:
    code, out = gto_cli("history", "-r", str(repo), model, "--json")
    assert code == 0, out
    result: list[dict[str, Any]] = json.loads(out)
    return result
