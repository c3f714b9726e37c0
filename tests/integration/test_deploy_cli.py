"""deploy/ agrees with the real program: command lines, env vars, settings files, the guide.

Every container command of every rendered target parses with `stageserve`'s own parser, every
STAGESERVE_* variable is one its command reads, every settings file loads with the real loader,
and every `stageserve` line of the deploy guide parses.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from gateway.cli import build_parser
from gateway.settings import ENV_PREFIX, Settings, load_settings
from registry_sync.sync.settings import SyncSettings
from tests.deploy_render import (
    DEPLOY,
    ROOT,
    TARGETS,
    LocalPod,
    cli_argv,
    pod_containers,
    render_all,
)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return render_all()


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"stageserve {' '.join(argv)}: rejected by the CLI") from exc


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_command_line_parses_with_the_real_cli(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    for c in pod_containers(docs):
        args = _parse(cli_argv(c, c.env(docs)))
        assert args.command == ("serve" if c.name == "gateway" else "sync"), c.name
        if args.command == "serve":
            assert args.port == c.ports["http"]
            assert args.cache_dir == "/var/cache/stageserve"
        elif not c.init:
            assert args.sync_metrics_port == c.ports["sync-metrics"]
            assert not args.once
        else:
            assert args.once
        if getattr(args, "registry", None) is not None:
            assert "$(" not in args.registry and "://" in args.registry


@pytest.mark.parametrize("target", TARGETS)
def test_every_stageserve_env_var_in_the_manifests_is_read_by_its_command(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    fields = {
        "gateway": {f.name for f in msgspec.structs.fields(Settings)},
        "sync": {f.name for f in msgspec.structs.fields(SyncSettings)},
    }
    for c in pod_containers(docs):
        env = {k: v for k, v in c.env(docs).items() if k.startswith(ENV_PREFIX)}
        known = fields["gateway" if c.name == "gateway" else "sync"]
        for key in env:
            setting = key.removeprefix(ENV_PREFIX).lower()
            assert setting == "config" or setting in known, f"{c.name}: {key}"


@pytest.mark.parametrize("target", TARGETS)
def test_the_settings_file_of_every_target_loads_with_the_real_settings_loader(
    rendered: dict[str, list[dict[str, Any]]], target: str, tmp_path: Path
) -> None:
    docs = rendered[target]
    pod = LocalPod(docs, tmp_path, {})
    (gateway,) = [c for c in pod_containers(docs) if c.name == "gateway"]
    _, env = pod.command(gateway)
    settings = load_settings(environ=env)
    assert settings.audit_path is not None
    assert Path(settings.audit_path).parent == pod.mounts["/var/log/stageserve"]
    # Prod answers nothing it cannot record; elsewhere an audit outage does not stop serving.
    expected_mode = "fail_closed" if target.startswith("overlays/prod") else "fail_open"
    assert settings.audit_failure_mode == expected_mode
    raw = yaml.safe_load(Path(env["STAGESERVE_CONFIG"]).read_text())
    assert "host" not in raw and "port" not in raw, "the command line sets them"


def test_the_deploy_guide_names_only_real_commands_flags_and_files() -> None:
    """Every `stageserve ...` line of a shell block in deploy/README.md parses with the real CLI."""
    guide = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", guide, flags=re.DOTALL)
    lines = [ln for b in blocks for ln in b.splitlines() if ln.startswith("stageserve ")]
    assert len(lines) >= 3
    for line in lines:
        _parse(shlex.split(line, comments=True)[1:])
    for path in ("deploy/Dockerfile", "deploy/k8s/overlays/prod", "deploy/k8s/overlays/dev"):
        assert path in guide and (ROOT / path).exists()
