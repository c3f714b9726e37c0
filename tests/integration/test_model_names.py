"""Model names gto allows but no route can carry ('/') are refused where they enter: at
`registry register`, and at sync, where such a model is reported and the others sync on.

Before, `register team/ver` worked and the model synced, loaded and counted as ready, yet
every route (/predict/team/ver, /v2/models/team/ver/infer, /models/team/ver) missed it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.server import ROOT
from tests.registry_packages import git, init_registry, write_package

pytestmark = pytest.mark.slow


def _stageserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_register_refuses_a_name_with_a_slash(tmp_path: Path) -> None:
    registry = init_registry(tmp_path / "registry")
    package = write_package(tmp_path / "pkg", name="team/ver")
    done = _stageserve(
        "registry", "register", "team/ver", str(package), "--registry", str(registry)
    )
    assert done.returncode == 1
    assert "contains '/'" in done.stderr
    assert git(registry, "tag", "--list") == ""


def test_sync_reports_a_gto_written_name_with_a_slash_and_syncs_the_others(
    tmp_path: Path,
) -> None:
    from gto import api as gto

    registry = init_registry(tmp_path / "registry")
    for name in ("ok", "team/ver"):
        write_package(registry / "models" / name, name=name)
    (registry / "artifacts.yaml").write_text(
        "ok:\n  type: model\n  path: models/ok\nteam/ver:\n  type: model\n  path: models/team/ver\n"
    )
    git(registry, "add", "-A")
    git(registry, "commit", "-qm", "two models")
    for name in ("ok", "team/ver"):  # the real gto writes what a user of gto would
        gto.register(str(registry), name, "HEAD", version="v1.0.0")
        gto.assign(str(registry), name, "prod", version="v1.0.0")
    cache = tmp_path / "cache"
    done = _stageserve("sync", "--once", "--registry", str(registry), "--cache", str(cache))
    assert done.returncode == 1, done.stdout
    snapshot = json.loads((cache / "snapshot.json").read_text())
    assert [(e["model"], e["stage"]) for e in snapshot["entries"]] == [("ok", "prod")]
    (error,) = snapshot["errors"]
    assert error["model"] == "team/ver"
    assert "contains '/'" in error["message"]
