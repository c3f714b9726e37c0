"""Exporting a package from git: `git archive` streamed into the folder, never cut short."""

from __future__ import annotations

from pathlib import Path

from registry_sync.package.read import read_package
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.models import save_sklearn_package
from tests.registry_packages import init_registry


def test_repeated_exports_never_kill_git_archive_with_a_closed_pipe(tmp_path: Path) -> None:
    # tarfile stops reading at the end-of-archive blocks while git may still be writing the
    # record padding: closing the pipe then killed git (SIGPIPE, "git archive failed: exit
    # -13") in about 1 export in 10 of this package. 60 exports: all must succeed.
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    package = save_sklearn_package(tmp_path / "gbr", gbr=True, name="gbr")
    writer.register(reg, "gbr", package, version="v1.0.0")
    for attempt in range(60):
        exported = reg.export_package("gbr", "v1.0.0", tmp_path / f"export-{attempt}")
        assert read_package(exported).digest == read_package(package).digest
