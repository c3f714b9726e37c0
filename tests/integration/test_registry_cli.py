"""`stageserve registry ...` through gateway.cli.main in-process and the real executable,
and the Python API's `load` on a real trained model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.cli import main
from registry_sync import api
from tests.registry_packages import init_registry, write_package
from tests.terminal import run_on_a_terminal

STAGESERVE = Path(sys.executable).parent / "stageserve"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_registry(tmp_path / "registry", stages=("dev", "staging", "prod"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["registry", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_the_registry_cli_registers_promotes_and_answers_queries(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = ["--registry", str(repo)]
    for tag, extra in (("a", []), ("b", ["--bump-minor"]), ("c", ["--version", "v1.0.0"])):
        package = write_package(tmp_path / tag, payload=tag.encode())
        code, out, err = _run(capsys, "register", "cost_predictor", str(package), *extra, *r)
        assert code == 0, err
    assert "created tag cost_predictor@v1.0.0" in out
    assert _run(capsys, "assign", "cost_predictor", "prod", "--version", "v0.1.0", *r)[0] == 0
    assert _run(capsys, "assign", "cost_predictor", "dev", "--version", "v1.0.0", *r)[0] == 0

    [listed] = _json(capsys, "list", *r)
    assert listed["latest"] == "v1.0.0"
    assert listed["stages"] == {"prod": "v0.1.0", "dev": "v1.0.0"}
    shown = _json(capsys, "show", "cost_predictor", *r)
    assert [v["version"] for v in shown["versions"]] == ["v0.0.1", "v0.1.0", "v1.0.0"]
    assert [c["name"] for c in shown["signature"]["inputs"]] == ["hp", "wt"]
    which = _json(capsys, "which", "cost_predictor", "prod", *r)
    assert which["version"] == "v0.1.0"
    events = _json(capsys, "history", "cost_predictor", *r)
    assert [e["event"] for e in events] == ["registration"] * 3 + ["assignment"] * 2

    code, out, _ = _run(capsys, "list", *r)
    assert out.splitlines()[0].split() == [
        "MODEL",
        "LATEST",
        "DEV",
        "PROD",
        "LABELS",
        "DESCRIPTION",
    ]
    assert out.splitlines()[1].split()[:4] == ["cost_predictor", "v1.0.0", "v1.0.0", "v0.1.0"]
    code, out, _ = _run(capsys, "check", *r)
    assert code == 0 and out.startswith("ok: 5 tags, 3 versions, 2 stages, 0 problems")

    code, out, _ = _run(capsys, "unassign", "cost_predictor", "dev", *r)
    assert code == 0 and "cost_predictor#dev!#3" in out
    assert _run(capsys, "deregister", "cost_predictor", "--version", "v1.0.0", *r)[0] == 0
    assert _json(capsys, "list", *r)[0]["latest"] == "v0.1.0"
    assert _run(capsys, "deprecate", "cost_predictor", *r)[0] == 0
    assert _json(capsys, "list", *r) == []


def test_which_at_accepts_iso_times_with_or_without_a_zone(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGESERVE_REGISTRY", str(repo))  # no --registry needed
    for date, argv in [
        ("2024-10-01T00:00:00Z", ["register", "m", str(write_package(tmp_path / "a"))]),
        (
            "2024-10-01T01:00:00Z",
            ["register", "m", str(write_package(tmp_path / "b", payload=b"b"))],
        ),
        ("2024-10-02T00:00:00Z", ["assign", "m", "prod", "--version", "v0.0.1"]),
        ("2024-10-05T00:00:00Z", ["assign", "m", "prod", "--version", "v0.0.2"]),
    ]:
        monkeypatch.setenv("GIT_COMMITTER_DATE", date)
        assert _run(capsys, *argv)[0] == 0
    monkeypatch.delenv("GIT_COMMITTER_DATE")
    assert _json(capsys, "which", "m", "prod", "--at", "2024-10-03")["version"] == "v0.0.1"
    at_noon_in_paris = _json(capsys, "which", "m", "prod", "--at", "2024-10-05T01:30:00+02:00")
    assert at_noon_in_paris["version"] == "v0.0.1"
    assert at_noon_in_paris["at"] == "2024-10-04T23:30:00Z"
    # An event stamped in the very second asked about may come after it: not counted yet.
    assert _json(capsys, "which", "m", "prod", "--at", "2024-10-05T00:00:00")["version"] == "v0.0.1"
    assert _json(capsys, "which", "m", "prod", "--at", "2024-10-05T00:00:01")["version"] == "v0.0.2"
    code, _, err = _run(capsys, "which", "m", "prod", "--at", "2024-10-01T00:30")
    assert code == 1 and "no version in stage 'prod' at 2024-10-01T00:30:00Z" in err
    with pytest.raises(SystemExit) as exited:
        main(["registry", "which", "m", "prod", "--at", "last tuesday"])
    assert exited.value.code == 2
    assert "not ISO 8601" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["which", "nope", "prod"], "error: model 'nope' is not in the registry (known: m)"),
        (["assign", "m", "qa", "--version", "v0.0.1"], "error: stage 'qa' is not allowed by .gto"),
        (["assign", "m", "prod", "--version", "v2.0.0"], "error: model 'm' has no version v2.0.0"),
        (["which", "m", "prod"], "error: model 'm' has no version in stage 'prod'"),
    ],
)
def test_registry_errors_are_one_line_and_exit_1(
    repo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    api.register("m", write_package(tmp_path / "a"), registry=repo)
    code, out, err = _run(capsys, *argv, "--registry", str(repo))
    assert (code, out) == (1, "")
    assert err.startswith(message) and err.count("\n") == 1


def test_a_plain_folder_is_not_a_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "list", "--registry", str(tmp_path))
    assert code == 1 and "not a git repository" in err


def test_the_stageserve_executable_runs_the_registry_commands(repo: Path, tmp_path: Path) -> None:
    api.register("m", write_package(tmp_path / "a"), registry=repo)
    api.assign("m", "prod", "v0.0.1", registry=repo)
    done = subprocess.run(
        [str(STAGESERVE), "registry", "which", "m", "prod", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == "v0.0.1"


def test_an_unreachable_remote_is_one_error_line_without_the_password(tmp_path: Path) -> None:
    url = "http://alice:s3cret@127.0.0.1:9/registry.git"  # nothing listens on port 9
    done = subprocess.run(
        [str(STAGESERVE), "registry", "list", "--registry", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert done.returncode == 1
    assert "s3cret" not in done.stderr + done.stdout
    # Off a terminal the clone's progress lines come first (JSON); the error is the last line.
    *progress_lines, error = done.stderr.strip().splitlines()
    assert error.startswith("error: registry http://alice:***@127.0.0.1:9/registry.git")
    assert [json.loads(line)["event"] for line in progress_lines] == ["started", "failed"]


def _big_package(tmp_path: Path) -> Path:
    return write_package(tmp_path / "big", payload=bytes(range(256)) * 8192)  # 2 MiB


def test_register_off_a_terminal_logs_json_lines_with_sizes_and_durations(
    repo: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(STAGESERVE), "registry", "register", "m", str(_big_package(tmp_path)), "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == "v0.0.1"  # stdout is still the answer alone
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["task"], line["event"]) for line in lines] == [
        ("verify m package", "started"),
        ("verify m package", "done"),
        ("write m v0.0.1 to the registry", "started"),
        ("write m v0.0.1 to the registry", "done"),
    ]
    assert lines[0]["total_bytes"] == 2 * 1024 * 1024
    assert lines[1]["bytes"] == 2 * 1024 * 1024 and lines[1]["duration_s"] >= 0
    assert all(line["logger"] == "stageserve.progress" for line in lines)


def test_register_on_a_terminal_draws_a_progress_bar(repo: Path, tmp_path: Path) -> None:
    done, drawn = run_on_a_terminal(
        [str(STAGESERVE), "registry", "register", "m", str(_big_package(tmp_path))], cwd=repo
    )
    assert done.returncode == 0
    assert "created tag m@v0.0.1" in done.stdout
    assert "verify m package:" in drawn and "/2.00M" in drawn, drawn
    assert "{" not in drawn, "no JSON log lines on a terminal"


def test_load_returns_the_stage_model_ready_to_predict(repo: Path, tmp_path: Path) -> None:
    from tests.models import example_rows, save_sklearn_package, train_sklearn_linear

    api.register("cost_predictor", save_sklearn_package(tmp_path / "v1"), registry=repo)
    api.register(
        "cost_predictor", save_sklearn_package(tmp_path / "v2", offset=10.0), registry=repo
    )
    api.assign("cost_predictor", "prod", "v0.0.1", registry=repo)
    rows = example_rows(3)
    model = api.load("cost_predictor", stage="prod", registry=repo, cache_dir=tmp_path / "cache")
    expected, features = train_sklearn_linear(4)
    assert model.version == "v0.0.1"
    np.testing.assert_allclose(model.predict(rows), expected.predict(features.head(3)), rtol=1e-6)
    newer = api.load("cost_predictor", version="v0.0.2", registry=repo)
    np.testing.assert_allclose(newer.predict(rows) - model.predict(rows), 10.0, rtol=1e-6)
    again = api.load("cost_predictor", stage="prod", registry=repo, cache_dir=tmp_path / "cache")
    assert again.path == model.path  # exported once into the cache, verified on every load


def test_check_prints_each_problem_and_exits_1(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.registry_packages import git

    api.register("m", write_package(tmp_path / "a", name="m"), registry=repo)
    (repo / "models/m/model.onnx").write_bytes(b"edited by hand")
    git(repo, "commit", "-qam", "edit")
    git(repo, "tag", "-a", "m@v0.0.2", "-m", "Registering artifact m version v0.0.2")
    git(repo, "tag", "-a", "m@2", "-m", "typo")
    code, out, _ = _run(capsys, "check", "--registry", str(repo))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "m@2: looks like a GTO tag, does not parse"
    assert lines[1].startswith("m@v0.0.2: models/m: ") and "'model.onnx'" in lines[1]
    assert lines[-1].startswith("FAILED: 3 tags, 2 versions, 0 stages, 2 problems")
    code, out, _ = _run(capsys, "check", "--registry", str(repo), "--json")
    assert code == 1 and len(json.loads(out)["problems"]) == 2


def test_a_relative_package_path_is_read_from_the_callers_folder(
    repo: Path, tmp_path: Path
) -> None:
    # What every CI job that registers from a build folder does, local and remote registries.
    build = tmp_path / "build"
    write_package(build / "pkgs" / "lin", name="lin")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    for registry in (str(repo), f"file://{bare}"):
        done = subprocess.run(
            [str(STAGESERVE), "registry", "register", "lin", "pkgs/lin", "--registry", registry],
            cwd=build,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
        assert done.returncode == 0, done.stderr
        assert "created tag lin@v0.0.1" in done.stdout


def test_register_keeps_what_gto_and_people_wrote_in_artifacts_yaml(
    repo: Path, tmp_path: Path
) -> None:
    from gto.api import describe
    from gto.index import FileIndexManager

    from tests.registry_packages import git

    api.register("m", write_package(tmp_path / "a", name="m", description=""), registry=repo)
    # gto's own artifacts.yaml writer (what its annotate did): description, labels, custom.
    FileIndexManager.from_path(str(repo)).add(
        "m", type="model", path="models/m", must_exist=False, allow_same_path=False,
        labels=["team-fleet"], description="Written with gto", custom={"owner": "fleet"},
        update=True,
    )  # fmt: skip
    text = "# Registry of the fleet team\n" + (repo / "artifacts.yaml").read_text()
    (repo / "artifacts.yaml").write_text(text)
    git(repo, "commit", "-qam", "annotate with gto")
    api.register("m", write_package(tmp_path / "b", name="m", payload=b"b", description=""),
                 registry=repo)  # fmt: skip
    assert (repo / "artifacts.yaml").read_text().startswith("# Registry of the fleet team\n")
    described = describe(str(repo), "m")
    assert described is not None
    assert described.description == "Written with gto"
    assert described.custom == {"owner": "fleet"}
    assert sorted(described.labels) == ["regression", "team-fleet"]
    api.register("n", write_package(tmp_path / "n", name="n"), registry=repo)
    api.deprecate("n", registry=repo)  # only n's entry goes (gto would revive it otherwise)
    kept = (repo / "artifacts.yaml").read_text()
    assert kept.startswith("# Registry of the fleet team\n") and "owner: fleet" in kept
    assert "\nn:" not in kept


def test_which_without_at_sees_an_assignment_of_this_very_second(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    api.register("m", write_package(tmp_path / "a", name="m"), registry=repo)
    # Dated a little ahead, as a writer's clock may be: "now" on this machine is the second
    # of the assignment or before it, never after (the case an --at of now always missed).
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{int(time.time()) + 30} +0000")
    api.assign("m", "prod", "v0.0.1", registry=repo)
    monkeypatch.delenv("GIT_COMMITTER_DATE")
    assert main(["which", "m", "prod", "--registry", str(repo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["assigned"]["version"] == "v0.0.1"


def test_load_without_a_cache_dir_leaves_no_folder_behind(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from tests.models import example_rows, save_sklearn_package

    api.register("cost_predictor", save_sklearn_package(tmp_path / "v1"), registry=repo)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = api.load("cost_predictor", version="v0.0.1", registry=repo)
    assert model.predict(example_rows(2)).shape == (2,)
    assert list(scratch.iterdir()) == []
