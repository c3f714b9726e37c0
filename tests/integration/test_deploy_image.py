"""deploy/Dockerfile and .dockerignore, checked statically (no container engine runs here)."""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from gateway.cli import build_parser
from tests.deploy_render import DEPLOY, ROOT, Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile((DEPLOY / "Dockerfile").read_text())


def test_dockerfile_builds_in_one_stage_and_runs_a_slim_final_stage(dockerfile: Dockerfile) -> None:
    froms = [dockerfile.resolve(i.args) for i in dockerfile.instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert froms[-1].split()[0] == "python:3.11-slim"
    builder = froms[0].split()[-1]
    final = dockerfile.stage(-1)
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert any(c.startswith(f"--from={builder} ") for c in copies), "final copies the venv"
    final_runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for tool in ("gcc", "g++", "build-essential", "make ", "python3-dev", "pip install"):
        assert tool not in final_runs, f"{tool} in the final stage"
    assert re.search(r"apt-get install [^&]*\bgit\b", final_runs), "git reads the registry"
    assert "--no-install-recommends" in final_runs and "rm -rf /var/lib/apt/lists" in final_runs


def test_dockerfile_final_stage_runs_as_uid_10001_with_stageserve_as_entrypoint(
    dockerfile: Dockerfile,
) -> None:
    final = dockerfile.stage(-1)
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert "--uid 10001" in " ".join(i.args for i in final if i.keyword == "RUN")
    (entrypoint,) = [json.loads(i.args) for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoint == ["stageserve"]
    (cmd,) = [json.loads(i.args) for i in final if i.keyword == "CMD"]
    args = build_parser().parse_args(cmd)
    assert args.command == "serve" and args.host == "0.0.0.0"
    exposed = [i.args for i in final if i.keyword == "EXPOSE"]
    assert exposed == [str(args.port)]
    (healthcheck,) = [i.args for i in final if i.keyword == "HEALTHCHECK"]
    assert f"127.0.0.1:{args.port}/healthz" in healthcheck


def _ignored(patterns: list[str], path: str) -> bool:
    """.dockerignore semantics for the plain patterns used here (no `!` exceptions)."""
    parts = path.split("/")
    for pattern in patterns:
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(parts[depth - 1], pattern[3:])
            ):
                return True
    return False


def test_dockerignore_keeps_venvs_caches_and_git_out_but_not_what_the_build_copies(
    dockerfile: Dockerfile,
) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)
    kept_out = [".venv", ".git", ".demo", ".pytest_cache", ".mypy_cache", ".ruff_cache"]
    kept_out += [".hypothesis", "benchmarks/.venv-peers", "gateway/__pycache__/app.pyc"]
    for path in kept_out:
        assert _ignored(patterns, path), path
    builder = dockerfile.stage(0)
    sources = [
        src
        for i in builder
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for src in i.args.split()[:-1]
    ]
    assert {"pyproject.toml", "README.md", "gateway", "registry_sync"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not _ignored(patterns, src), f"{src} is copied but ignored"
        if (ROOT / src).is_dir():
            assert not _ignored(patterns, f"{src}/__init__.py")


def _normalized(name: str) -> str:
    """PEP 503: ruamel.yaml, ruamel_yaml and Ruamel-YAML are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: str) -> dict[str, str]:
    """name -> version of every `name==version` line of a pip-compile/uv lock."""
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", line):
            pins[_normalized(re.sub(r"\[.*\]", "", m.group(1)))] = m.group(2)
    return pins


@pytest.mark.parametrize(
    ("lock", "extra"), [("requirements.lock", None), ("requirements-dev.lock", "dev")]
)
def test_the_locks_pin_with_hashes_every_dependency_pyproject_names(
    lock: str, extra: str | None
) -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    if extra:
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = _pins(lock)
    text = (ROOT / lock).read_text()
    for block in re.split(r"\n(?=\S)", text):
        if "==" in block.split("\n", 1)[0]:
            assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"
    stale = [
        str(req)
        for req in wanted
        if (name := _normalized(req.name)) not in pins or Version(pins[name]) not in req.specifier
    ]
    assert not stale, f"{lock} lacks or contradicts {stale}: run `make lock`"


def test_the_image_installs_its_dependencies_from_the_lock_only(dockerfile: Dockerfile) -> None:
    runs = " ".join(i.args for i in dockerfile.stage(0) if i.keyword == "RUN")
    assert "--require-hashes --no-deps -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs and "pip check" in runs
    assert not re.search(r"pip install (?!--upgrade pip|--require-hashes|--no-deps)", runs)
    copies = [i.args for i in dockerfile.stage(0) if i.keyword == "COPY"]
    assert copies[0] == "requirements.lock ./", "the dependency layer comes first (cache)"
