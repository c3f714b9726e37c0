"""The layering rules of the code map, checked by walking every import (ast, not text).

Layers point one way: registry → package → sync → pool → http, with schema and telemetry
below the pool and shadow beside (below) http. A module may import from a lower layer or
from its own folder, never from a higher layer or a sibling folder of the same rank;
`registry_sync` never imports `gateway` or litestar. Imports inside functions and under
TYPE_CHECKING count too: a lazy import is still an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Longest matching prefix wins. Same rank and a different prefix: forbidden both ways.
RANKS: dict[str, int] = {
    # registry_sync: its errors, then logging and the settings loader, underneath everything
    "registry_sync.errors": 0,
    "registry_sync.logs": 1,
    "registry_sync.settings_layers": 1,
    "registry_sync.progress": 1,
    "registry_sync.package": 2,
    # history: the journal's events, audit and outcome rows, the stores (files, PostgreSQL)
    "registry_sync.history": 2,
    "registry_sync.registry": 3,
    "registry_sync.runtimes": 3,
    # the MLflow source reads like the git registry and answers in its views
    "registry_sync.mlflow": 4,
    "registry_sync.sync": 5,
    "registry_sync.api": 6,
    "registry_sync.cli_format": 6,
    "registry_sync.cli": 7,
    # gateway: its errors, then settings, the drain flag and the HTTP edge, underneath everything
    "gateway.errors": 10,
    "gateway.settings": 11,
    "gateway.drain": 11,
    "gateway.edge": 11,
    "gateway.schema": 12,
    "gateway.access": 12,
    "gateway.telemetry": 13,
    "gateway.pool": 14,
    "gateway.shadow": 15,
    # history (as-of pool, outcomes, performance) beside shadow: neither imports the other
    "gateway.history": 15,
    "gateway.http": 16,
    "gateway.ui": 17,
    "gateway.app": 18,
    # the process around the app: uvicorn and the embedded sync, then many workers
    "gateway.server": 19,
    "gateway.embedded_sync": 19,
    "gateway.workers": 20,
    "gateway.serve_cli": 21,
    "gateway.cli": 22,
}
# The packages' own (docstring-only) __init__ files stand outside the layers.
ROOTS = frozenset({"gateway", "registry_sync"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` is an edge to the submodule.
            for alias in node.names:
                found.append((node.lineno, f"{base}.{alias.name}"))
    return found


def _layer(module: str) -> tuple[str, int] | None:
    best = None
    for prefix, rank in RANKS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, rank)
    return best


def _source_files() -> list[Path]:
    return sorted(
        p for d in ROOTS for p in (ROOT / d).rglob("*.py") if _module_name(p) not in ROOTS
    )


def _violations() -> list[str]:
    problems = []
    for path in _source_files():
        me = _module_name(path)
        mine = _layer(me)
        where = path.relative_to(ROOT)
        if mine is None:
            problems.append(f"{where}: not in any layer (add it to RANKS)")
            continue
        for line, target in _imports(path):
            if me.startswith("registry_sync") and target.split(".")[0] in ("gateway", "litestar"):
                problems.append(f"{where}:{line}: registry_sync imports {target}")
                continue
            theirs = _layer(target)
            if theirs is None or theirs[0] == mine[0]:
                continue
            if theirs[1] >= mine[1]:
                problems.append(f"{where}:{line}: {me} ({mine[0]}) imports {target} ({theirs[0]})")
    return problems


def test_no_module_imports_from_a_higher_layer() -> None:
    assert _violations() == []


def test_the_checker_sees_a_forbidden_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A check that cannot fail is no check: plant a telemetry module that imports http.
    fake_root = tmp_path
    for name in ("gateway/telemetry", "gateway/http", "registry_sync"):
        (fake_root / name).mkdir(parents=True)
    (fake_root / "gateway/telemetry/bad.py").write_text(
        "from gateway.http.predict_route import PredictRoute\n"
        "def f():\n    from gateway.shadow import worker\n"
    )
    (fake_root / "registry_sync/leak.py").write_text("import litestar\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", fake_root)
    monkeypatch.setitem(RANKS, "registry_sync.leak", 1)
    problems = _violations()
    assert any("bad.py:1" in p and "gateway.http" in p for p in problems)
    assert any("bad.py:3" in p and "gateway.shadow" in p for p in problems)
    assert any("leak.py:1: registry_sync imports litestar" in p for p in problems)


def test_every_source_module_has_a_layer() -> None:
    assert [p for p in _source_files() if _layer(_module_name(p)) is None] == []
