"""The built wheel holds every module and data file: the app and the API import from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_installed_wheel_imports_the_app_and_the_api(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("stageserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        str(p.relative_to(ROOT))
        for d in ("gateway", "registry_sync")
        for p in (ROOT / d).rglob("*")
        # The console's templates and static files ship too (package data).
        if p.suffix in (".py", ".csv", ".typed", ".html", ".css", ".js", ".svg")
        and "__pycache__" not in p.parts
    }
    assert sources - names == set()
    # The license as an SPDX expression (PEP 639) with its full text, and no warning about it.
    [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert "Classifier: Typing :: Typed" in text
    [license_file] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(license_file) == (ROOT / "LICENSE").read_bytes()
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # From an empty folder, with only the installed copy on the path before site-packages.
    probe = (
        "import gateway.app, registry_sync.api, registry_sync.package.data as d; "
        "from gateway.ui.render import Renderer; from gateway.ui.pages import PerformanceView; "
        "assert 'stageserve' in Renderer().render('live.html', rows=[], window_s=1, shadows=[], "
        "performance=PerformanceView(0, 1, 1, [], 'no history')); "
        "print(gateway.app.__file__); print(len(d.mtcars()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    where, rows = done.stdout.split()
    assert Path(where).is_relative_to(target)
    assert rows == "32"
