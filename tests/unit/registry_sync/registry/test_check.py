"""`registry check` finds broken tags, corrupt or missing artifacts and unresolvable stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_sync.registry.check import check_registry
from registry_sync.registry.git_registry import GitRegistry
from tests.registry_packages import git, init_registry, write_package


@pytest.fixture
def reg(tmp_path: Path) -> GitRegistry:
    registry = GitRegistry(init_registry(tmp_path / "registry", stages=("dev", "prod")))
    registry.register("m", write_package(tmp_path / "pkg", name="m"))
    registry.assign("m", "prod", "v0.0.1")
    return registry


def _commit_and_tag(repo: Path, message: str, tag: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "tag", "-a", tag, "-m", message)


def test_a_healthy_registry_passes(reg: GitRegistry) -> None:
    report = check_registry(reg)
    assert report.ok, report.problems
    assert (report.tags, report.versions, report.stages) == (2, 1, 1)


def test_a_version_whose_artifact_was_altered_in_git_fails_its_digest(reg: GitRegistry) -> None:
    (reg.path / "models/m/model.onnx").write_bytes(b"altered after saving")
    _commit_and_tag(reg.path, "edit weights by hand", "m@v0.0.2")
    [problem] = check_registry(reg).problems
    assert problem.subject == "m@v0.0.2"
    assert "size of 'model.onnx'" in problem.message or "sha256" in problem.message
    assert "models/m" in problem.message


def test_a_version_missing_its_artifact_is_reported(reg: GitRegistry) -> None:
    (reg.path / "models/m/model.onnx").unlink()
    _commit_and_tag(reg.path, "lose the weights", "m@v0.0.2")
    [problem] = check_registry(reg).problems
    assert problem.subject == "m@v0.0.2" and "'model.onnx'" in problem.message
    assert "missing" in problem.message


def test_tags_that_look_like_ours_but_do_not_parse_or_are_lightweight_are_reported(
    reg: GitRegistry,
) -> None:
    git(reg.path, "tag", "-a", "m@1.0", "-m", "typo: no v")
    git(reg.path, "tag", "m@v9.9.9")
    git(reg.path, "tag", "-a", "release-2024", "-m", "not a registry tag")
    problems = {p.subject: p.message for p in check_registry(reg).problems}
    assert problems == {
        "m@1.0": "looks like a GTO tag, does not parse",
        "m@v9.9.9": "lightweight tag: gto ignores it, so do we",
    }


def test_a_stage_on_an_unregistered_commit_or_outside_dot_gto_is_reported(
    reg: GitRegistry,
) -> None:
    (reg.path / "scratch.txt").write_text("x")
    _commit_and_tag(reg.path, "no version here", "m#dev#2")
    git(reg.path, "tag", "-a", "m#qa#3", "-m", "assign", "m@v0.0.1^{commit}")
    problems = {p.subject: p.message for p in check_registry(reg).problems}
    assert "not a registered version" in problems["m#dev"]
    assert problems["m#qa"] == "stage is not listed in .gto"


def test_a_deleted_numbered_tag_is_reported_as_a_gap(reg: GitRegistry, tmp_path: Path) -> None:
    reg.register("m", write_package(tmp_path / "pkg2", name="m", payload=b"v2"))
    reg.assign("m", "dev", "v0.0.2")
    reg.assign("m", "prod", "v0.0.2")
    assert check_registry(reg).ok
    git(reg.path, "tag", "-d", "m#dev#2")  # history rewritten: dev never had v0.0.2
    [problem] = check_registry(reg).problems
    assert problem.subject == "m"
    assert problem.message.startswith("tag #2 missing: a deleted tag rewrites the history")
