"""The `stageserve` command line: one parser, sub-commands contributed by each package.

`main(argv)` is a plain function of argv so tests call it without a shell. Every error the
project raises on purpose becomes one red line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from registry_sync.errors import RegistryError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from gateway import serve_cli
    from gateway.telemetry import journal_cli
    from registry_sync import cli as registry_cli
    from registry_sync.sync import cli as sync_cli

    parser = argparse.ArgumentParser(
        prog="stageserve",
        description="Serve the model version a git (GTO) registry assigns to each stage.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registry_cli.add_commands(sub)
    sync_cli.add_commands(sub)
    serve_cli.add_commands(sub)
    journal_cli.add_commands(sub)
    return parser


def _fail(message: str) -> int:
    red, reset = ("\033[31m", "\033[0m") if sys.stderr.isatty() else ("", "")
    print(f"{red}error: {message}{reset}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.errors import GatewayError

    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (RegistryError, GatewayError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
