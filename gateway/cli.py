"""The `stageserve` command line: one parser, sub-commands contributed by each package.

`main(argv)` is a plain function of argv so tests call it without a shell. Every error the
project raises on purpose becomes one line on stderr (red on a terminal, unless NO_COLOR is
set) and exit status 1; output cut short by a closed pipe (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from registry_sync.errors import RegistryError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from gateway import serve_cli
    from gateway.history import cli as history_cli
    from gateway.telemetry import journal_cli
    from registry_sync import cli as registry_cli
    from registry_sync.sync import cli as sync_cli

    parser = argparse.ArgumentParser(
        prog="stageserve",
        description="Serve the model version a git (GTO) registry assigns to each stage.",
    )
    parser.add_argument(
        "--version", action="version", version=f"stageserve {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registry_cli.add_commands(sub)
    sync_cli.add_commands(sub)
    serve_cli.add_commands(sub)
    journal_cli.add_commands(sub)
    history_cli.add_commands(sub)
    return parser


def _version() -> str:
    try:
        return version("stageserve")
    except PackageNotFoundError:
        return "unknown"


def _fail(message: str) -> int:
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    red, reset = ("\033[31m", "\033[0m") if colour else ("", "")
    print(f"{red}error: {message}{reset}", file=sys.stderr)
    return 1


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null, so the flush at exit cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.errors import GatewayError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        code = handler(args)
        sys.stdout.flush()
        return code
    except (RegistryError, GatewayError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`stageserve ... | head`): not an error of ours.
        _quiet_stdout()
        return 141  # what a shell reports for a process ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
