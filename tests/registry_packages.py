"""Hand-made model packages and git registries for registry tests (no training: milliseconds)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from registry_sync.package.manifest import ColumnSpec, FileEntry, Manifest, ModelCard, Signature
from registry_sync.package.read import write_manifest

__all__ = ["git", "init_registry", "write_package"]


def write_package(
    folder: Path,
    name: str = "cost_predictor",
    *,
    inputs: tuple[str, ...] = ("hp", "wt"),
    payload: bytes = b"weights v1",
    description: str = "Fuel use from horsepower and weight",
    labels: tuple[str, ...] = ("regression",),
) -> Path:
    """A package whose artifact is opaque bytes: valid for the registry, not for a runtime."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(payload)
    manifest = Manifest(
        name=name,
        format="onnx",
        files=[
            FileEntry(
                path="model.onnx",
                sha256=hashlib.sha256(payload).hexdigest(),
                size_bytes=len(payload),
            )
        ],
        signature=Signature(
            inputs=[ColumnSpec(name=n, type="double") for n in inputs],
            outputs=[ColumnSpec(name="mpg", type="double")],
        ),
        input_example=[{n: 1.0 for n in inputs}],
        card=ModelCard(description=description, owner="tests"),
        labels=list(labels),
    )
    write_manifest(manifest, folder)
    return folder


def git(cwd: Path, *args: str, input_text: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        check=True,
        input=input_text,
    )
    return done.stdout


def init_registry(path: Path, *, stages: tuple[str, ...] | None = None) -> Path:
    """A fresh git repository with one commit (and a .gto listing `stages`, if given)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.com")
    (path / "README.md").write_text("registry\n")
    if stages is not None:
        (path / ".gto").write_text("stages: [" + ", ".join(stages) + "]\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "init")
    return path
