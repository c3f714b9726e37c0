"""The output signature of a version that answered a request, for scoring its outcome."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.pool.model_pool import ModelPool
from registry_sync.package.manifest import ColumnSpec

__all__ = ["OutputSignatures"]


class OutputSignatures:
    """Outputs of every version this gateway has seen loaded (remembered after a swap); for a
    version it never loaded, those of the model's version serving now (outputs are part of
    a stage's contract, and rarely change)."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool
        self._seen: dict[tuple[str, str], tuple[ColumnSpec, ...]] = {}

    def __call__(self, model: str, version: str, digest: str | None) -> Sequence[ColumnSpec] | None:
        current = None
        for lv in self.pool.loaded_versions():
            outputs = tuple(lv.manifest.signature.outputs)
            self._seen[(lv.model, lv.version)] = outputs
            if lv.model == model:
                current = outputs
        return self._seen.get((model, version), current)

    def remember(self, model: str, version: str, outputs: Sequence[ColumnSpec]) -> None:
        """A version loaded elsewhere (the as-of pool)."""
        self._seen[(model, version)] = tuple(outputs)
