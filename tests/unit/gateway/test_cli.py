"""The `stageserve` command line as a good citizen: --version, help for every argument, the
environment variables in `serve --help`, NO_COLOR (pipes and ports: tests/integration)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import pytest

from gateway.cli import build_parser, main


def _parsers(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_argument_of_every_command_has_help() -> None:
    missing = [
        f"{path}: {action.dest}"
        for path, parser in _parsers(build_parser(), "stageserve")
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not action.help
    ]
    assert missing == []


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"stageserve {version('stageserve')}\n"


def test_serve_help_lists_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for variable in ("STAGESERVE_MAX_BODY_BYTES", "STAGESERVE_DEFAULT_MODEL", "STAGESERVE_CONFIG"):
        assert variable in text


def test_errors_are_red_only_on_a_terminal_and_never_with_no_color(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main(["registry", "list", "--registry", "/nonexistent"]) == 1
    assert capsys.readouterr().err.startswith("\033[31merror: ")
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["registry", "list", "--registry", "/nonexistent"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
