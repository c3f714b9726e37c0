"""A loaded model version: predictor, request schema, warm-up, and its in-flight count."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from gateway.errors import GatewayError, ModelLoadError, OutputInvalidError
from gateway.pool.inference import inline_max_rows

if TYPE_CHECKING:
    from gateway.pool.admission import Gate
    from gateway.pool.batching import Batcher
from gateway.schema.request_schema import InputBatch, RequestSchema
from registry_sync.errors import RegistryError
from registry_sync.package.manifest import Manifest
from registry_sync.runtimes.safe_load import LoadPolicy
from registry_sync.sync.snapshot import DesiredEntry

__all__ = ["LoadedVersion", "Loader", "load_version", "warm_up"]

log = logging.getLogger("stageserve.pool")
_WARMUP_CALLS = 3
# The pool loads several models at once, each in a worker thread. Building a predictor
# imports the modules its pickle names, and CPython can refuse two threads importing a
# package with circular imports at the same time ("_DeadlockError: deadlock detected by
# _ModuleLock('sklearn.linear_model._base')", seen when two sklearn models loaded together).
# So only this step runs one at a time; reading and hashing the files and the warm-up (the
# slow parts of a load) stay concurrent.
_CONSTRUCT_LOCK = threading.Lock()


class LoadedVersion:
    """One (model, version) in memory; shared by every stage that routes to it."""

    __slots__ = (
        # heap.py checks through a weak reference that a released version is gone.
        "__weakref__",
        "batcher",
        "digest",
        "engine",
        "gate",
        "inflight",
        "inline_max_rows",
        "load_s",
        "manifest",
        "model",
        "package_path",
        "pinned",
        "predict",
        "predictor",
        "schema",
        "version",
    )

    def __init__(
        self,
        *,
        model: str,
        version: str,
        digest: str,
        package_path: str,
        manifest: Manifest,
        predictor: Any,
        schema: RequestSchema,
        inline_rows: int | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.digest = digest
        self.package_path = package_path
        self.manifest = manifest
        self.predictor = predictor
        self.engine: str = predictor.engine
        self.schema = schema
        # Requests of at most this many rows are answered inline, larger ones on the pool
        # (see inference.py). An explicit value is kept; otherwise warm_up measures.
        self.inline_max_rows = inline_max_rows(self.engine) if inline_rows is None else inline_rows
        self.pinned = inline_rows is not None
        self.inflight = 0
        self.load_s = 0.0
        # Set when the model has a `batching` rule (pool/batching.py): requests queue there.
        self.batcher: Batcher | None = None
        # Set when the model has a limit or a timeout (pool/admission.py).
        self.gate: Gate | None = None
        # Bound once: the hot path calls `self.predict(batch)` with no attribute lookups.
        self.predict: Callable[[InputBatch], Any] = (
            self._predict_matrix if schema.numeric else self._predict_columns
        )

    def _predict_matrix(self, batch: InputBatch) -> Any:
        return self.predictor.predict_matrix(batch.matrix)

    def _predict_columns(self, batch: InputBatch) -> Any:
        return self.predictor.predict_columns(batch.column_map())

    def use_columns(self) -> None:
        """Fall back to `predict_columns` (the engine has no matrix fast path for this model)."""
        self.predict = self._predict_columns

    def close(self) -> None:
        """Release the model (after the last in-flight request). Also breaks this object's
        own reference cycles (the bound `predict`, the batcher's and gate's references
        back), so it is freed at once even while the heap is frozen (heap.py)."""
        close = getattr(self.predictor, "close", None)
        if callable(close):
            close()
        self.predict = _released
        self.batcher = None
        self.gate = None


def _released(batch: InputBatch) -> Any:
    raise RuntimeError("this version was released")


Loader = Callable[[DesiredEntry], LoadedVersion]


def warm_up(loaded: LoadedVersion) -> None:
    """Predict on the manifest's input example and validate the output, a few times."""
    example = loaded.manifest.input_example
    if not example:
        raise ModelLoadError(loaded.model, loaded.version, "model.yaml has no input_example")
    body = msgspec.json.encode({"inputs": example})
    try:
        batch = loaded.schema.decode(body)
    except GatewayError as exc:
        raise ModelLoadError(
            loaded.model, loaded.version, f"input_example does not match the signature: {exc}"
        ) from None
    try:
        loaded.predict(batch)
    except TypeError:
        # The runtime contract: predict_matrix raises TypeError when the engine or signature
        # has no matrix fast path (statsmodels, categorical inputs); use named columns.
        loaded.use_columns()
    fastest = float("inf")
    for _ in range(_WARMUP_CALLS):
        started = time.perf_counter()
        out = loaded.predict(batch)
        fastest = min(fastest, time.perf_counter() - started)
        try:
            loaded.schema.predictions(np.asarray(out), batch.rows)
        except ValueError as exc:
            raise OutputInvalidError(loaded.model, loaded.version, f"warm-up: {exc}") from None
    if not loaded.pinned:
        loaded.inline_max_rows = inline_max_rows(loaded.engine, fastest)


def load_version(
    entry: DesiredEntry,
    *,
    allow_non_finite: bool = False,
    max_rows: int = 10_000,
    policy: LoadPolicy | None = None,
    trust_signed: bool = False,
) -> LoadedVersion:
    """Read and verify the package, load its predictor, build its decoder and warm it up.

    Runs in a worker thread; every failure becomes a ModelLoadError naming the version.
    """
    from registry_sync.package.read import read_package
    from registry_sync.runtimes import load_predictor

    started = time.perf_counter()
    try:
        package = read_package(entry.package_path)
        if package.digest != entry.digest:
            raise ModelLoadError(
                entry.model,
                entry.version,
                f"package digest {package.digest} differs from the snapshot's {entry.digest}",
            )
        if trust_signed and entry.signed_by:
            # The assignment was signed by an allowed signer: its origin is trusted.
            policy = LoadPolicy(extra=policy.extra if policy else (), unrestricted=True)
        with _CONSTRUCT_LOCK:
            predictor = load_predictor(package, policy=policy)
        schema = RequestSchema(
            package.manifest.signature, allow_non_finite=allow_non_finite, max_rows=max_rows
        )
        loaded = LoadedVersion(
            model=entry.model,
            version=entry.version,
            digest=entry.digest,
            package_path=entry.package_path,
            manifest=package.manifest,
            predictor=predictor,
            schema=schema,
        )
        warm_up(loaded)
    except ModelLoadError:
        raise
    except (RegistryError, GatewayError) as exc:
        raise ModelLoadError(entry.model, entry.version, str(exc)) from None
    except Exception as exc:
        # A runtime library error (onnxruntime, pickle, statsmodels): keep its type and text.
        raise ModelLoadError(entry.model, entry.version, f"{type(exc).__name__}: {exc}") from exc
    loaded.load_s = time.perf_counter() - started
    return loaded
