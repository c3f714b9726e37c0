"""The README's examples run as written, in order, in an empty folder (real CLI, real gto).

Python saves packages into build/, the shell registers and promotes them in a new registry,
gto reads it, the Python API writes and loads from it, and `sync --once` materializes it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.server import ROOT

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _block(language: str, containing: str) -> str:
    found = [
        code for lang, code in _FENCE.findall(README) if lang == language and containing in code
    ]
    assert len(found) == 1, f"expected one {language} block with {containing!r}"
    return found[0]


def _run(args: list[str], cwd: Path) -> str:
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(cwd),
        "XDG_CACHE_HOME": str(cwd / ".cache"),
        "LC_ALL": "C.UTF-8",
    }
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{args[:2]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_readme_examples_work_as_written(tmp_path: Path) -> None:
    python = [str(BIN / "python"), "-c"]
    _run([*python, _block("python", "save_statsmodels(ols")], tmp_path)
    assert (tmp_path / "build/cost_predictor/model.yaml").is_file()

    cli = _run(
        ["bash", "-e", "-o", "pipefail", "-c", _block("sh", "git init -q models-repo")], tmp_path
    )
    assert "created tag cost_predictor@deprecated" in cli
    assert re.search(r"cost_predictor\s+prod\s+v0\.0\.1", cli)  # which: after the rollback

    shown = _run(["bash", "-e", "-c", _block("sh", "gto show -r models-repo")], tmp_path)
    assert "cost_predictor" in shown

    api = _block("python", "api.register(") + "\nprint(model.version, model.predict(features))\n"
    answer = _run([*python, "features = [{'hp': 110, 'wt': 2.62, 'cyl': 6}]\n" + api], tmp_path)
    assert answer.startswith("v1.0.1 [")

    serving = _block("sh", "sync --once").splitlines()
    [once] = [line for line in serving if line.startswith("stageserve sync --once")]
    _run(["bash", "-e", "-c", once], tmp_path)
    assert (tmp_path / "stageserve-cache/snapshot.json").is_file()
