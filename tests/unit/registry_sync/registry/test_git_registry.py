"""GitRegistry on real git repositories in tmp_path: writes, queries and every error path."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path

import pytest

from registry_sync.errors import (
    DigestMismatchError,
    IncompatibleSignatureError,
    InvalidTagError,
    MissingFileError,
    ModelNotFoundError,
    NotARegistryError,
    NoVersionInStageError,
    StageNotAllowedError,
    TagTimeError,
    VersionExistsError,
    VersionNotFoundError,
)
from registry_sync.package.read import read_package
from registry_sync.registry.git_registry import GitRegistry
from tests.registry_packages import git, init_registry, write_package


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_registry(tmp_path / "registry", stages=("dev", "staging", "prod"))


@pytest.fixture
def reg(repo: Path) -> GitRegistry:
    return GitRegistry(repo)


def _pkg(tmp_path: Path, tag: str, **kwargs: object) -> Path:
    return write_package(tmp_path / tag, payload=tag.encode(), **kwargs)  # type: ignore[arg-type]


def _tags(repo: Path) -> list[str]:
    return sorted(git(repo, "tag").split())


def test_register_commits_the_package_records_it_and_tags_the_version(
    reg: GitRegistry, repo: Path, tmp_path: Path
) -> None:
    written = reg.register("cost_predictor", _pkg(tmp_path, "a"))
    assert written.tag == "cost_predictor@v0.0.1"
    assert git(repo, "rev-parse", "cost_predictor@v0.0.1^{commit}").strip() == written.commit
    files = git(repo, "ls-tree", "-r", "--name-only", written.commit).split()
    assert {"models/cost_predictor/model.yaml", "models/cost_predictor/model.onnx"} <= set(files)
    assert "artifacts.yaml" in files
    assert git(repo, "status", "--porcelain") == ""  # the work tree follows the commit
    message = git(repo, "tag", "-l", "--format=%(contents:subject)", written.tag).strip()
    assert message == "Registering artifact cost_predictor version v0.0.1"


def test_a_new_version_replaces_the_files_of_the_previous_one(
    reg: GitRegistry, repo: Path, tmp_path: Path
) -> None:
    first = _pkg(tmp_path, "a")
    (first / "notes.txt").write_text("not listed in model.yaml, so not registered")
    reg.register("m", first)
    second = tmp_path / "b"
    write_package(second, payload=b"b")
    reg.register("m", second, bump="minor")
    assert not (repo / "models/m/notes.txt").exists()
    exported = reg.export_package("m", "v0.0.1", tmp_path / "export")
    assert read_package(exported).manifest.files[0].sha256 == hashlib.sha256(b"a").hexdigest()
    assert (repo / "models/m/model.onnx").read_bytes() == b"b"


def test_versions_bump_from_the_highest_ever_registered(reg: GitRegistry, tmp_path: Path) -> None:
    assert reg.register("m", _pkg(tmp_path, "a"), version="v1.4.0").version == "v1.4.0"
    assert reg.register("m", _pkg(tmp_path, "b"), bump="major").version == "v2.0.0"
    reg.deregister("m", "v2.0.0")
    # v2.0.0's tag still exists, so the next patch is v2.0.1, not v2.0.0 again.
    assert reg.register("m", _pkg(tmp_path, "c")).version == "v2.0.1"


def test_registering_an_existing_version_is_refused_and_changes_nothing(
    reg: GitRegistry, repo: Path, tmp_path: Path
) -> None:
    reg.register("m", _pkg(tmp_path, "a"), version="v1.0.0")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(VersionExistsError, match=r"already has version v1\.0\.0"):
        reg.register("m", _pkg(tmp_path, "b"), version="v1.0.0")
    assert git(repo, "rev-parse", "HEAD") == head
    assert _tags(repo) == ["m@v1.0.0"]


def test_a_package_whose_artifact_does_not_match_its_digest_is_not_registered(
    reg: GitRegistry, repo: Path, tmp_path: Path
) -> None:
    package = _pkg(tmp_path, "a")
    (package / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError, match=r"model\.onnx"):
        reg.register("m", package)
    (package / "model.onnx").unlink()
    with pytest.raises(MissingFileError, match=r"model\.onnx"):
        reg.register("m", package)
    assert _tags(repo) == []


def test_bad_names_and_versions_are_refused(reg: GitRegistry, tmp_path: Path) -> None:
    with pytest.raises(InvalidTagError, match="model name"):
        reg.register("bad name", _pkg(tmp_path, "a"))
    with pytest.raises(InvalidTagError, match="SemVer"):
        reg.register("m", _pkg(tmp_path, "a"), version="1.0")


def test_a_folder_that_is_not_a_git_repository_is_not_a_registry(tmp_path: Path) -> None:
    with pytest.raises(NotARegistryError, match="not a git repository"):
        GitRegistry(tmp_path)
    with pytest.raises(NotARegistryError, match="no such folder"):
        GitRegistry.open(tmp_path / "missing")


def test_assign_tags_the_stage_and_which_answers_it(reg: GitRegistry, tmp_path: Path) -> None:
    reg.register("m", _pkg(tmp_path, "a"))
    reg.register("m", _pkg(tmp_path, "b"))
    assert reg.assign("m", "prod", "v0.0.1").tag == "m#prod#1"
    assert reg.assign("m", "prod", "v0.0.2").tag == "m#prod#2"
    assert reg.assign("m", "dev", "v0.0.2").tag == "m#dev#3"
    assert reg.which("m", "prod").version == "v0.0.2"
    assert reg.assign("m", "prod", "v0.0.1").tag == "m#prod#4"  # rollback
    assert reg.which("m", "prod").version == "v0.0.1"
    assert {(r.stage, r.version) for r in reg.resolve_stages()} == {
        ("prod", "v0.0.1"),
        ("dev", "v0.0.2"),
    }
    assert [r.stage for r in reg.resolve_stages(stages=["dev"])] == ["dev"]
    assert reg.resolve_stages(models=["other"]) == []


def test_stages_not_in_dot_gto_are_refused(reg: GitRegistry, tmp_path: Path) -> None:
    reg.register("m", _pkg(tmp_path, "a"))
    with pytest.raises(StageNotAllowedError, match="'qa' is not allowed"):
        reg.assign("m", "qa", "v0.0.1")


def test_unknown_models_and_versions_are_named_in_the_error(
    reg: GitRegistry, tmp_path: Path
) -> None:
    reg.register("m", _pkg(tmp_path, "a"))
    with pytest.raises(ModelNotFoundError, match=r"'nope' is not in the registry \(known: m\)"):
        reg.which("nope", "prod")
    with pytest.raises(ModelNotFoundError):
        reg.show("nope")
    with pytest.raises(VersionNotFoundError, match=r"no version v9\.9\.9 \(registered: v0\.0\.1\)"):
        reg.assign("m", "prod", "v9.9.9")
    with pytest.raises(VersionNotFoundError):
        reg.export_package("m", "v9.9.9", tmp_path / "x")
    with pytest.raises(NoVersionInStageError, match="no version in stage 'prod'"):
        reg.which("m", "prod")


def test_assign_refuses_a_version_that_breaks_the_stage_clients_unless_forced(
    reg: GitRegistry, tmp_path: Path
) -> None:
    reg.register("m", _pkg(tmp_path, "a", inputs=("hp", "wt")))
    reg.register("m", _pkg(tmp_path, "b", inputs=("hp", "cyl")))
    reg.assign("m", "prod", "v0.0.1")
    with pytest.raises(IncompatibleSignatureError) as caught:
        reg.assign("m", "prod", "v0.0.2")
    assert "'wt' removed" in str(caught.value) and "'cyl' added as required" in str(caught.value)
    assert reg.which("m", "prod").version == "v0.0.1"
    reg.assign("m", "prod", "v0.0.2", force=True)
    assert reg.which("m", "prod").version == "v0.0.2"


def test_unassign_empties_the_stage_even_with_older_assignments_in_it(
    reg: GitRegistry, tmp_path: Path
) -> None:
    reg.register("m", _pkg(tmp_path, "a"))
    reg.register("m", _pkg(tmp_path, "b"))
    reg.assign("m", "prod", "v0.0.1")
    reg.assign("m", "prod", "v0.0.2")
    written = reg.unassign("m", "prod")
    assert sorted(w.tag for w in written) == ["m#prod!#3", "m#prod!#4"]
    with pytest.raises(NoVersionInStageError):
        reg.which("m", "prod")
    with pytest.raises(NoVersionInStageError):
        reg.unassign("m", "prod")


def test_deregistering_the_serving_version_hands_the_stage_back(
    reg: GitRegistry, tmp_path: Path
) -> None:
    reg.register("m", _pkg(tmp_path, "a"))
    reg.register("m", _pkg(tmp_path, "b"))
    reg.assign("m", "prod", "v0.0.1")
    reg.assign("m", "prod", "v0.0.2")
    assert reg.deregister("m", "v0.0.2").tag == "m@v0.0.2!"
    assert reg.which("m", "prod").version == "v0.0.1"
    with pytest.raises(VersionNotFoundError):
        reg.deregister("m", "v0.0.2")
    assert [v.active for v in reg.show("m").versions] == [True, False]


def test_deprecate_hides_the_model_and_a_new_version_brings_it_back(
    reg: GitRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(1727740800, 1727740900))  # a fake clock, one second per write
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{next(clock)} +0000")
    reg.register("m", _pkg(tmp_path, "a"))
    reg.assign("m", "prod", "v0.0.1")
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{next(clock)} +0000")
    assert reg.deprecate("m") is not None
    assert reg.deprecate("m") is None  # already deprecated: nothing to do
    assert reg.list_models() == [] and reg.resolve_stages() == []
    with pytest.raises(NoVersionInStageError):
        reg.which("m", "prod")
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{next(clock)} +0000")
    reg.register("m", _pkg(tmp_path, "b"))
    assert [m.name for m in reg.list_models()] == ["m"]
    assert reg.which("m", "prod").version == "v0.0.1"


def test_which_at_answers_over_the_events_before_that_time(
    reg: GitRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = 86_400
    start = 1_727_740_800  # 2024-10-01T00:00:00Z
    for offset, action in [
        (0, lambda: reg.register("m", _pkg(tmp_path, "a"))),
        (1, lambda: reg.register("m", _pkg(tmp_path, "b"))),
        (2, lambda: reg.assign("m", "prod", "v0.0.1")),
        (5, lambda: reg.assign("m", "prod", "v0.0.2")),
    ]:
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{start + offset * day} +0000")
        action()
    assert reg.which("m", "prod", at=start + 3 * day).version == "v0.0.1"
    assert reg.which("m", "prod", at=start + 5 * day).version == "v0.0.1"  # same second
    assert reg.which("m", "prod", at=start + 5 * day + 1).version == "v0.0.2"
    assert reg.which("m", "prod", at=start + 2 * day + 1).assigned_at == "2024-10-03T00:00:00Z"
    with pytest.raises(NoVersionInStageError, match="at 2024-10-02T00:00:00Z"):
        reg.which("m", "prod", at=start + day)
    history = reg.history("m")
    assert [e.time for e in history][-1] == "2024-10-06T00:00:00Z"


def test_a_write_that_cannot_be_dated_after_the_stages_newest_event_is_refused(
    reg: GitRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fixed clock cannot put a second assignment of a stage after the first: the write is
    # refused and changes nothing, rather than dated a second into the future (which would
    # make history and `which --at` show it in prod before it ever was).
    monkeypatch.setenv("GIT_COMMITTER_DATE", "@1727740800 +0000")  # the clock stands still
    reg.register("m", _pkg(tmp_path, "a"))
    reg.register("m", _pkg(tmp_path, "b"))
    reg.assign("m", "prod", "v0.0.2")
    reg.assign("m", "dev", "v0.0.2")  # another stage: may share the second
    head = git(reg.path, "rev-parse", "HEAD")
    tags = git(reg.path, "tag")
    with pytest.raises(TagTimeError, match="GIT_COMMITTER_DATE fixes the clock"):
        reg.assign("m", "prod", "v0.0.1")
    reg.unassign("m", "dev")  # may tie its assignment: gto lets the unassignment win
    assert set(git(reg.path, "tag").split()) == {*tags.split(), "m#dev!#3"}
    assert git(reg.path, "rev-parse", "HEAD") == head
    assert reg.which("m", "prod").version == "v0.0.2"
    with pytest.raises(TagTimeError):
        reg.deprecate("m")  # would tie the model's newest events
    assert reg.list_models()[0].name == "m"


def test_rapid_writes_wait_out_the_second_and_are_never_dated_in_the_future(
    reg: GitRegistry, tmp_path: Path
) -> None:
    # The four assigns within 0.26 s were dated :50, :51, :52, :53. Now each waits
    # for the clock to pass the stage's newest event: real times, in #N order.
    reg.register("m", _pkg(tmp_path, "a"))
    reg.register("m", _pkg(tmp_path, "b"))
    for version in ("v0.0.1", "v0.0.2", "v0.0.1"):
        reg.assign("m", "prod", version)
    finished = time.time()
    times = [_unix(e.time) for e in reg.history("m") if e.stage == "prod"]
    assert times == sorted(set(times))  # one second each, in order
    assert max(times) <= finished
    assert reg.which("m", "prod").version == "v0.0.1"


def test_list_filters_by_label_and_searches_names_and_descriptions(
    reg: GitRegistry, tmp_path: Path
) -> None:
    reg.register("cost", _pkg(tmp_path, "a", labels=("regression",), description="Fuel cost"))
    reg.register("churn", _pkg(tmp_path, "b", labels=("classification",), description="Leavers"))
    assert [m.name for m in reg.list_models()] == ["churn", "cost"]
    assert [m.name for m in reg.list_models(label="regression")] == ["cost"]
    assert [m.name for m in reg.list_models(search="LEAVERS")] == ["churn"]
    assert [m.name for m in reg.list_models(search="ost")] == ["cost"]
    assert reg.list_models(label="nope") == []


def test_show_gives_versions_stages_card_and_signature(reg: GitRegistry, tmp_path: Path) -> None:
    reg.register("m", _pkg(tmp_path, "a"))
    reg.register("m", _pkg(tmp_path, "b", inputs=("hp", "wt", "cyl")))
    reg.assign("m", "prod", "v0.0.1")
    detail = reg.show("m")
    assert detail.latest == "v0.0.2" and detail.stages == {"prod": "v0.0.1"}
    assert [(v.version, v.stages) for v in detail.versions] == [
        ("v0.0.1", ["prod"]),
        ("v0.0.2", []),
    ]
    assert detail.card is not None and detail.card.owner == "tests"
    assert detail.signature is not None
    assert [c.name for c in detail.signature.inputs] == ["hp", "wt", "cyl"]


def test_register_leaves_the_users_staged_changes_alone(
    reg: GitRegistry, repo: Path, tmp_path: Path
) -> None:
    (repo / "notes.md").write_text("work in progress\n")
    git(repo, "add", "notes.md")
    written = reg.register("m", _pkg(tmp_path, "a"))
    assert "notes.md" not in git(repo, "ls-tree", "-r", "--name-only", written.commit)
    assert git(repo, "status", "--porcelain").strip() == "A  notes.md"


def test_a_detached_head_cannot_take_a_new_version(
    reg: GitRegistry, repo: Path, tmp_path: Path
) -> None:
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(NotARegistryError, match="detached"):
        reg.register("m", _pkg(tmp_path, "a"))


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
