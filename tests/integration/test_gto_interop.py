"""stageserve and the real gto on one repository: each reads exactly what the other writes.

Hand-written cases; random sequences are in test_gto_interop_random.py. The `gto`
executable in the venv is the reference; in-process calls use gto's own click app and API.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from registry_sync.registry.git_registry import GitRegistry
from tests.gto_driver import (
    GTO_EXE,
    commit_package,
    gto_cli,
    gto_clock,
    gto_history,
    gto_registry,
    gto_stage,
)
from tests.registry_packages import git, init_registry, write_package


def _gto_exe(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [str(GTO_EXE), *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_registry(tmp_path / "registry")


@pytest.fixture
def packages(tmp_path: Path) -> list[Path]:
    return [write_package(tmp_path / f"pkg{i}", payload=f"weights {i}".encode()) for i in range(3)]


def test_tags_written_by_stageserve_read_the_same_through_the_gto_executable(
    repo: Path, packages: list[Path]
) -> None:
    reg = GitRegistry(repo)
    reg.register("cost_predictor", packages[0])
    reg.register("cost_predictor", packages[1], bump="minor")
    reg.assign("cost_predictor", "prod", "v0.0.1")
    reg.assign("cost_predictor", "prod", "v0.1.0")
    reg.assign("cost_predictor", "prod", "v0.0.1")  # rollback
    reg.assign("cost_predictor", "dev", "v0.1.0")
    reg.unassign("cost_predictor", "dev")
    reg.deregister("cost_predictor", "v0.1.0")

    tags = git(repo, "tag")
    assert sorted(tags.split()) == sorted(
        [
            "cost_predictor@v0.0.1",
            "cost_predictor@v0.1.0",
            "cost_predictor#prod#1",
            "cost_predictor#prod#2",
            "cost_predictor#prod#3",
            "cost_predictor#dev#4",
            "cost_predictor#dev!#5",
            "cost_predictor@v0.1.0!",
        ]
    )
    prod = json.loads(_gto_exe(repo, "show", "cost_predictor#prod", "--json"))
    assert (
        [v["version"] for v in prod] == ["v0.0.1"] == [reg.which("cost_predictor", "prod").version]
    )
    assert gto_stage(repo, "cost_predictor", "dev") is None
    summary = gto_registry(repo)
    assert summary["cost_predictor"]["version"] == "v0.0.1"  # v0.1.0 is deregistered
    assert summary["cost_predictor"]["stage"] == {"prod": "v0.0.1"}
    [ours] = reg.list_models()
    assert (ours.latest, ours.stages) == ("v0.0.1", {"prod": "v0.0.1"})

    theirs = gto_history(repo, "cost_predictor")
    mine = reg.history("cost_predictor")
    assert sorted(
        (e["event"], e["version"], e["stage"], e["ref"], e["message"], _unix(e["timestamp"]))
        for e in theirs
    ) == sorted((e.event, e.version, e.stage, e.tag, e.message, _unix(e.time)) for e in mine)


def test_a_registry_written_by_the_gto_executable_resolves_the_same_in_stageserve(
    repo: Path,
) -> None:
    commit_package(repo, "churn", "one", 1_700_000_000)
    _gto_exe(repo, "register", "churn", "HEAD", "--version", "v1.0.0")
    commit_package(repo, "churn", "two", 1_700_000_100)
    # The rest through gto's click CLI in-process (the same code, without a 2 s start-up
    # each), one second apart: a deprecation in the same second as an assignment would lose.
    reg = GitRegistry(repo)
    with gto_clock(int(time.time()) + 10) as clock:
        for args in (
            ["register", "churn", "HEAD", "--bump-minor"],
            ["assign", "churn", "--version", "v1.0.0", "--stage", "prod"],
            ["assign", "churn", "--version", "v1.1.0", "--stage", "prod"],
            ["assign", "churn", "--version", "v1.0.0", "--stage", "prod", "--force"],
        ):
            clock.now += 1
            code, out = gto_cli(args[0], "-r", str(repo), *args[1:])
            assert code == 0, out
        assert gto_stage(repo, "churn", "prod") == reg.which("churn", "prod").version == "v1.0.0"
        assert [v.version for v in reg.show("churn").versions] == ["v1.0.0", "v1.1.0"]
        clock.now += 1
        code, out = gto_cli("deprecate", "-r", str(repo), "churn")
        assert code == 0, out
    assert gto_stage(repo, "churn", "prod") is None
    assert reg.list_models() == []
    assert reg.resolve_stages() == []


def _gto(op: str, repo: Path, *args: Any, **kwargs: Any) -> None:
    import gto.api

    getattr(gto.api, op)(str(repo), *args, **kwargs)


def _two_versions(repo: Path, clock: Any) -> None:
    commit_package(repo, "m", "one", clock.now)
    _gto("register", repo, "m", "HEAD", version="v0.0.1")
    clock.now += 10
    commit_package(repo, "m", "two", clock.now)
    _gto("register", repo, "m", "HEAD", version="v0.0.2")
    clock.now += 10


def test_reassigning_an_older_version_rolls_the_stage_back_in_both_tools(repo: Path) -> None:
    with gto_clock() as clock:
        _two_versions(repo, clock)
        for version in ("v0.0.1", "v0.0.2", "v0.0.1"):
            _gto("assign", repo, "m", "prod", version=version, force=True)
            clock.now += 1
    assert gto_stage(repo, "m", "prod") == "v0.0.1"
    assert GitRegistry(repo).which("m", "prod").version == "v0.0.1"


def test_assignments_in_one_second_resolve_as_gto_does_not_by_counter(repo: Path) -> None:
    # gto's stable sorts, not #N, order events of one second: v0.0.1 (registered first) keeps
    # prod although #2 assigned v0.0.2 later. stageserve follows gto; its own writes never tie.
    with gto_clock() as clock:
        _two_versions(repo, clock)
        _gto("assign", repo, "m", "prod", version="v0.0.1")
        _gto("assign", repo, "m", "prod", version="v0.0.2")
    assert gto_stage(repo, "m", "prod") == "v0.0.1"
    assert GitRegistry(repo).which("m", "prod").version == "v0.0.1"


def test_an_unassignment_in_the_same_second_as_an_assignment_wins_in_both_tools(
    repo: Path,
) -> None:
    with gto_clock() as clock:
        _two_versions(repo, clock)
        _gto("assign", repo, "m", "dev", version="v0.0.2")
        _gto("unassign", repo, "m", stage="dev", version="v0.0.2")
        _gto("assign", repo, "m", "dev", version="v0.0.2", force=True)
    assert gto_stage(repo, "m", "dev") is None
    assert GitRegistry(repo).resolve_stages() == []


def test_a_deregistered_version_leaves_the_stage_to_the_previous_assignment(repo: Path) -> None:
    with gto_clock() as clock:
        _two_versions(repo, clock)
        _gto("assign", repo, "m", "prod", version="v0.0.1")
        clock.now += 1
        _gto("assign", repo, "m", "prod", version="v0.0.2")
        clock.now += 1
        _gto("deregister", repo, "m", version="v0.0.2")
    assert gto_stage(repo, "m", "prod") == "v0.0.1"
    assert GitRegistry(repo).which("m", "prod").version == "v0.0.1"


def test_the_cli_rule_wins_over_semver_order_where_gto_api_disagrees(repo: Path) -> None:
    import gto.api

    with gto_clock() as clock:
        commit_package(repo, "m", "one", clock.now)
        _gto("register", repo, "m", "HEAD", version="v1.0.0")
        clock.now += 1
        commit_package(repo, "m", "two", clock.now)
        _gto("register", repo, "m", "HEAD", version="v0.5.0")
        for version in ("v1.0.0", "v0.5.0"):
            clock.now += 1
            _gto("assign", repo, "m", "prod", version=version)
    api_says = gto.api.find_versions_in_stage(str(repo), "m", "prod")
    assert [v.version for v in api_says] == ["v1.0.0"]  # SemVer order: not what the CLI says
    assert gto_stage(repo, "m", "prod") == "v0.5.0"
    assert GitRegistry(repo).which("m", "prod").version == "v0.5.0"


def test_a_later_commit_that_still_lists_a_deprecated_model_revives_it_in_both_tools(
    repo: Path,
) -> None:
    with gto_clock() as clock:
        _two_versions(repo, clock)
        _gto("assign", repo, "m", "prod", version="v0.0.2")
        clock.now += 1
        _gto("deprecate", repo, "m")
        assert gto_stage(repo, "m", "prod") is None
        assert GitRegistry(repo).resolve_stages() == []
        clock.now += 1
        commit_package(repo, "other", "x", clock.now)  # artifacts.yaml still lists m
    assert gto_stage(repo, "m", "prod") == "v0.0.2"
    assert GitRegistry(repo).which("m", "prod").version == "v0.0.2"


def test_stageserve_deprecate_keeps_the_model_deprecated_for_gto_after_later_commits(
    repo: Path, packages: list[Path]
) -> None:
    reg = GitRegistry(repo)
    reg.register("m", packages[0])
    reg.assign("m", "prod", "v0.0.1")
    written = reg.deprecate("m")
    assert written is not None and written.tag == "m@deprecated"
    reg.register("other", packages[1])
    assert "m" not in gto_registry(repo)
    assert gto_stage(repo, "m", "prod") is None
    assert [m.name for m in reg.list_models()] == ["other"]
    assert reg.list_models(deprecated=True)[0].deprecated


def test_which_at_a_time_answers_over_the_events_before_it_like_gto_did_then(
    repo: Path,
) -> None:
    reg = GitRegistry(repo)
    answers = {}
    with gto_clock() as clock:
        _two_versions(repo, clock)
        for version in ("v0.0.1", "v0.0.2", "v0.0.1"):
            clock.now += 100
            _gto("assign", repo, "m", "prod", version=version, force=True)
            answers[clock.now] = gto_stage(repo, "m", "prod")
    previous = None
    for when, expected in answers.items():
        assert reg.which("m", "prod", at=when + 1).version == expected
        assert reg.which("m", "prod", at=when + 99.9).version == expected
        # In the very second of an assignment it may not have happened yet: not counted.
        found = reg.view(at=when).state["m"].resolve("prod")
        assert (found.version if found else None) == previous
        previous = expected
    assert [answers[t] for t in sorted(answers)] == ["v0.0.1", "v0.0.2", "v0.0.1"]


def test_history_lists_the_same_events_as_gto_history(repo: Path) -> None:
    with gto_clock() as clock:
        _two_versions(repo, clock)
        _gto("assign", repo, "m", "prod", version="v0.0.1")
        _gto("unassign", repo, "m", stage="prod", version="v0.0.1")
        _gto("deregister", repo, "m", version="v0.0.2")
        _gto("deprecate", repo, "m")
    theirs = gto_history(repo, "m")
    mine = GitRegistry(repo).history("m")
    assert sorted(
        (e["event"], e["ref"], e["version"], e["stage"], e["commit"]) for e in theirs
    ) == (sorted((e.event, e.tag, e.version, e.stage, e.commit) for e in mine))
    assert [_unix(e.time) for e in mine] == sorted(_unix(e["timestamp"]) for e in theirs)


def test_environment_without_git_identity_still_writes_tags_gto_reads(
    tmp_path: Path, packages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "bare-identity"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q", "-b", "main"], check=True)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.gitconfig
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    reg = GitRegistry(repo)
    reg.register("m", packages[0])
    reg.assign("m", "prod", "v0.0.1")
    assert os.environ.get("GIT_AUTHOR_NAME") is None
    assert gto_stage(repo, "m", "prod") == "v0.0.1"
    assert reg.history("m")[0].author == "stageserve"


def test_stageserve_writes_mean_the_same_to_gto_when_events_share_a_second(
    repo: Path, packages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake clock that moves only where stageserve must wait for it: every other write
    # shares a second with the one before, the case where gto's tie rules decide.
    start = 1727740800

    def at(offset: int) -> None:
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{start + offset} +0000")

    at(0)
    reg = GitRegistry(repo)
    reg.register("m", packages[0])
    reg.register("m", packages[1])
    reg.assign("m", "prod", "v0.0.1")
    at(1)
    reg.assign("m", "prod", "v0.0.2")
    at(2)
    reg.assign("m", "prod", "v0.0.1")  # a rollback
    reg.assign("m", "dev", "v0.0.2")
    reg.unassign("m", "dev")  # in its assignment's second: gto lets the unassignment win
    assert gto_stage(repo, "m", "prod") == "v0.0.1" == reg.which("m", "prod").version
    assert gto_stage(repo, "m", "dev") is None
    at(3)
    reg.deprecate("m")
    assert gto_stage(repo, "m", "prod") is None
    at(4)
    reg.register("m", packages[2])  # a new version lifts the deprecation
    assert gto_stage(repo, "m", "prod") == "v0.0.1" == reg.which("m", "prod").version
    assert gto_registry(repo)["m"]["version"] == "v0.0.3"
