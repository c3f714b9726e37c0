"""`stageserve registry ...`: the git (GTO) registry from the command line, over registry.py."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from registry_sync import cli_format
from registry_sync.errors import NotARegistryError
from registry_sync.logs import with_progress_lines
from registry_sync.mlflow.location import is_mlflow_uri
from registry_sync.registry.git import Signing
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.views import parse_time_s

if TYPE_CHECKING:
    from registry_sync.mlflow.source import MlflowRegistry

__all__ = ["add_commands"]

_REGISTRY_ENV = "STAGESERVE_REGISTRY"


def add_commands(sub: Any) -> None:
    """Add `registry` and its sub-commands to the `stageserve` parser's sub-parsers."""
    parser = sub.add_parser(
        "registry",
        help="register, promote and query models in a git (GTO) registry",
        description="A git registry in GTO's tag format: `gto` reads what this writes.",
    )
    commands = parser.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    where, as_json, signing, trust = _shared_options()

    def add(name: str, handler: Any, help_text: str, *parents: argparse.ArgumentParser) -> Any:
        command = commands.add_parser(
            name, help=help_text, description=help_text, parents=[where, *parents]
        )
        command.set_defaults(handler=with_progress_lines(handler))
        return command

    cmd = add("register", _register, "commit a package folder as a new version", as_json, signing)
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")
    cmd.add_argument(
        "path",
        metavar="PATH",
        help="the package folder (holding model.yaml), relative to the current folder",
    )
    bump = cmd.add_mutually_exclusive_group()
    bump.add_argument("--version", help="the version, vX.Y.Z (default: bump the latest)")
    for part in ("major", "minor", "patch"):
        bump.add_argument(
            f"--bump-{part}",
            dest="bump",
            action="store_const",
            const=part,
            help=f"the next {part} version of the latest (--bump-patch is the default)",
        )

    _add_link(add, as_json)

    cmd = add("assign", _assign, "assign a version to a stage (tag NAME#STAGE#N)", as_json, signing)
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")
    cmd.add_argument("stage", metavar="STAGE", help="the stage, e.g. prod")
    cmd.add_argument("--version", required=True, help="the registered version, vX.Y.Z")
    cmd.add_argument(
        "--force",
        action="store_true",
        help="assign even if the version's inputs break the stage's clients",
    )

    cmd = add("unassign", _unassign, "take a stage away (tag NAME#STAGE!#N)", as_json, signing)
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")
    cmd.add_argument("stage", metavar="STAGE", help="the stage, e.g. prod")
    cmd.add_argument("--version", help="only drop this version from the stage")

    cmd = add("deregister", _deregister, "withdraw a version (tag NAME@vX.Y.Z!)", as_json, signing)
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")
    cmd.add_argument("--version", required=True, help="the version to withdraw, vX.Y.Z")

    cmd = add("deprecate", _deprecate, "deprecate a model (tag NAME@deprecated)", as_json, signing)
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")

    cmd = add("list", _list, "every model, its latest version and its stages", as_json)
    cmd.add_argument("--label", help="only models with this label")
    cmd.add_argument("--search", help="only models whose name or description contains TEXT")
    cmd.add_argument("--deprecated", action="store_true", help="include deprecated models")

    cmd = add(
        "show", _show, "versions, stages (who assigned and signed), card, signature", as_json, trust
    )
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")

    # An MLflow registry's stage history is the one its sync recorded in its cache.
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument(
        "--cache",
        metavar="DIR",
        help="MLflow registry: the sync's cache, which holds the stage history it observed "
        "(default $STAGESERVE_CACHE_DIR, else $XDG_CACHE_HOME/stageserve)",
    )

    cmd = add("which", _which, "the version in a stage, now or at a time", as_json, trust, cache)
    cmd.add_argument(
        "--trusted",
        action="store_true",
        help="follow only assignments the trust policy trusts, and name their signer",
    )
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")
    cmd.add_argument("stage", metavar="STAGE", help="the stage, e.g. prod")
    cmd.add_argument(
        "--at",
        type=_time,
        metavar="TIME",
        help="ISO 8601 time (no zone means UTC): answer over the events before it",
    )

    cmd = add(
        "history",
        _history,
        "every registry event of a model, oldest first, with who signed it",
        as_json,
        cache,
        trust,
    )
    cmd.add_argument("name", metavar="NAME", nargs="?", help="only this model (default: all)")

    cmd = add(
        "check", _check, "check tags, packages and stages (exit 1 on any problem)", as_json, trust
    )
    cmd.add_argument(
        "--verify-signatures",
        action="store_true",
        help="also fail on any unsigned or untrusted tag in a stage the trust policy protects",
    )


def _shared_options() -> tuple[argparse.ArgumentParser, ...]:
    """Options several commands share: where, --json, signing, the trust policy."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--registry",
        "--repo",
        dest="registry",
        default=None,
        metavar="PATH_OR_URL",
        help=f"registry git repository: a path or a URL (default ${_REGISTRY_ENV}, else .)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")
    signing = argparse.ArgumentParser(add_help=False)
    signing.add_argument(
        "--sign", action="store_true", help="sign the tag (git tag -s: SSH or OpenPGP)"
    )
    signing.add_argument(
        "--signing-key",
        metavar="KEY",
        help="SSH key file or OpenPGP key id (default: git's user.signingkey); implies --sign",
    )
    signing.add_argument(
        "--signing-format",
        choices=["ssh", "openpgp"],
        help="default: git's gpg.format; implies --sign",
    )
    trust = argparse.ArgumentParser(add_help=False)
    trust.add_argument(
        "--config",
        metavar="FILE",
        help="settings file holding trust_policy (default $STAGESERVE_CONFIG)",
    )
    return where, as_json, signing, trust


def _signing(args: argparse.Namespace) -> Signing | None:
    if not (args.sign or args.signing_key or args.signing_format):
        return None
    return Signing(key=args.signing_key, format=args.signing_format)


def _trusted(args: argparse.Namespace, *, required: bool = True) -> GitRegistry:
    """The registry with the settings' trust policy applied (errors when there is none,
    unless not `required`: then the registry as it is)."""
    from registry_sync.errors import SettingsError
    from registry_sync.registry.trust import TagTrust, TrustPolicy
    from registry_sync.sync.settings import load_sync_settings

    if not required and not (args.config or os.environ.get("STAGESERVE_CONFIG")):
        return _open(args)
    settings = load_sync_settings(environ=os.environ, config_file=args.config)
    if not settings.trust_policy:
        if not required:
            return _open(args)
        raise SettingsError(
            "trust_policy", "the settings", "none given (--config FILE or STAGESERVE_CONFIG)"
        )
    reg = _open(args)
    reg.trust = TagTrust(reg.git, TrustPolicy(settings.trust_policy))
    return reg


def _add_link(add: Any, as_json: argparse.ArgumentParser) -> None:
    cmd = add(
        "link",
        _link,
        "register a version whose package stays in another git repository, at a tag",
        as_json,
    )
    cmd.add_argument("name", metavar="NAME", help="the model (artifact) name, e.g. cost_predictor")
    cmd.add_argument(
        "--source", required=True, metavar="GIT_URL", help="the repository holding the package"
    )
    cmd.add_argument("--rev", required=True, metavar="TAG", help="a tag (a bare commit is refused)")
    cmd.add_argument(
        "--path", default="", metavar="DIR", help="the package folder in it (default: its root)"
    )
    bump = cmd.add_mutually_exclusive_group()
    bump.add_argument("--version", help="the version, vX.Y.Z (default: bump the latest)")
    for part in ("major", "minor", "patch"):
        bump.add_argument(
            f"--bump-{part}",
            dest="bump",
            action="store_const",
            const=part,
            help=f"the next {part} version of the latest (--bump-patch is the default)",
        )


def _time(text: str) -> float:
    try:
        return parse_time_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _location(args: argparse.Namespace) -> str:
    return str(args.registry or os.environ.get(_REGISTRY_ENV) or ".")


def _open(args: argparse.Namespace) -> GitRegistry:
    location = _location(args)
    if is_mlflow_uri(location):
        raise NotARegistryError(
            location,
            f"`registry {args.registry_command}` works on git registries; an MLflow registry "
            "is written with MLflow's own client (`which` and `history` read it)",
        )
    return GitRegistry.open(location)


def _open_mlflow(args: argparse.Namespace) -> MlflowRegistry | None:
    location = _location(args)
    if not is_mlflow_uri(location):
        return None
    from registry_sync.mlflow.source import MlflowRegistry
    from registry_sync.sync.settings import load_sync_settings
    from registry_sync.sync.setup import default_cache_dir

    settings = load_sync_settings({"cache_dir": args.cache}, environ=os.environ)
    cache = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    return MlflowRegistry.open(
        location, cache, environ=os.environ, stage_map=settings.mlflow_stages
    )


def _emit(args: argparse.Namespace, result: Any, human: str) -> int:
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())
        sys.stdout.write("\n")
    else:
        print(human)
    return 0


def _register(args: argparse.Namespace) -> int:
    written = _open(args).register(
        args.name,
        args.path,
        version=args.version,
        bump=args.bump or "patch",
        sign=_signing(args),
    )
    return _emit(args, written, cli_format.format_written([written]))


def _link(args: argparse.Namespace) -> int:
    from registry_sync.registry.link import link

    written = link(
        _open(args),
        args.name,
        args.source,
        args.rev,
        path=args.path,
        version=args.version,
        bump=args.bump or "patch",
    )
    return _emit(args, written, cli_format.format_written([written]))


def _assign(args: argparse.Namespace) -> int:
    written = _open(args).assign(
        args.name, args.stage, args.version, force=args.force, sign=_signing(args)
    )
    return _emit(args, written, cli_format.format_written([written]))


def _unassign(args: argparse.Namespace) -> int:
    written = _open(args).unassign(args.name, args.stage, args.version, sign=_signing(args))
    return _emit(args, written, cli_format.format_written(written))


def _deregister(args: argparse.Namespace) -> int:
    written = _open(args).deregister(args.name, args.version, sign=_signing(args))
    return _emit(args, written, cli_format.format_written([written]))


def _deprecate(args: argparse.Namespace) -> int:
    written = _open(args).deprecate(args.name, sign=_signing(args))
    human = cli_format.format_written([written]) if written else f"{args.name} is deprecated"
    return _emit(args, written, human)


def _list(args: argparse.Namespace) -> int:
    models = _open(args).list_models(
        label=args.label, search=args.search, deprecated=args.deprecated
    )
    return _emit(args, models, cli_format.format_models(models))


def _show(args: argparse.Namespace) -> int:
    detail = _trusted(args, required=False).show(args.name)
    return _emit(args, detail, cli_format.format_detail(detail))


def _which(args: argparse.Namespace) -> int:
    mlflow = _open_mlflow(args)
    if mlflow is not None:
        found = mlflow.which(args.name, args.stage, at=args.at)
        return _emit(args, found, cli_format.format_which(found))
    reg = _trusted(args) if args.trusted else _open(args)
    found = reg.which(args.name, args.stage, at=args.at)
    return _emit(args, found, cli_format.format_which(found))


def _history(args: argparse.Namespace) -> int:
    mlflow = _open_mlflow(args)
    if mlflow is not None:
        events = mlflow.stage_history(args.name)
    else:
        events = _trusted(args, required=False).history(args.name)
    return _emit(args, events, cli_format.format_history(events))


def _check(args: argparse.Namespace) -> int:
    from registry_sync.registry.check import check_registry

    reg = _trusted(args) if args.verify_signatures else _open(args)
    report = check_registry(reg, verify_signatures=args.verify_signatures)
    _emit(args, report, cli_format.format_check(report))
    return 0 if report.ok else 1
