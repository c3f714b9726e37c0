"""Scoring an observed outcome against what a version predicted, per the output signature.

Per output, by its declared type:
- `double`/`float` and a number observed: regression (absolute and squared error);
- `double`/`float` and a boolean observed: the output is the probability of `true` (a binary
  classifier such as a logistic model): accuracy at 0.5 and log-loss;
- `long`/`integer`/`boolean`/`string`: a label: accuracy (exact match); when the model also
  outputs `proba_<label>` for the observed label, log-loss too.
`null` for a row (or an output left out of a row's object) means "no outcome for it".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from registry_sync.package.manifest import ColumnSpec

__all__ = ["LOG_LOSS_EPS", "OutcomeError", "Scores", "score"]

# Probabilities are clipped to [eps, 1 - eps] so that one confident miss costs ~34.5, not ∞
# (scikit-learn's log_loss clips the same way).
LOG_LOSS_EPS = 1e-15
_LABEL_TYPES = frozenset({"long", "integer", "boolean", "string"})


class OutcomeError(ValueError):
    """An outcome that does not fit the output signature; `path` names the place."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class Scores(msgspec.Struct, kw_only=True):
    """Sums over the rows x outputs that got an outcome."""

    regression_values: int = 0
    abs_error: float = 0.0
    squared_error: float = 0.0
    labels: int = 0
    correct: int = 0
    log_loss_values: int = 0
    log_loss: float = 0.0

    @property
    def values(self) -> int:
        return self.regression_values + self.labels


def score(outputs: Sequence[ColumnSpec], predictions: list[Any], outcome: Any) -> Scores:
    """Validate `outcome` (one entry per predicted row, shaped like a prediction) and score
    it; raises OutcomeError naming the first problem."""
    if not isinstance(outcome, list):
        raise OutcomeError("$.outcome", "expected a list with one entry per predicted row")
    if len(outcome) != len(predictions):
        raise OutcomeError(
            "$.outcome",
            f"expected {len(predictions)} entries (one per predicted row), got {len(outcome)}",
        )
    if not any(v is not None for v in outcome):
        raise OutcomeError("$.outcome", "every entry is null: nothing to record")
    scores = Scores()
    specs = {spec.name: spec for spec in outputs}
    single = len(outputs) == 1
    for row, (observed, predicted) in enumerate(zip(outcome, predictions, strict=True)):
        if observed is None:
            continue
        path = f"$.outcome[{row}]"
        if single:
            _score_value(scores, outputs[0], observed, predicted, row=None, path=path)
            continue
        if not isinstance(observed, dict):
            raise OutcomeError(path, f"expected an object of outputs ({', '.join(specs)})")
        if not isinstance(predicted, dict):
            raise OutcomeError(path, "the recorded prediction has no named outputs")
        for name, value in observed.items():
            spec = specs.get(name)
            if spec is None:
                raise OutcomeError(
                    f"{path}.{name}", f"no such output (outputs: {', '.join(specs)})"
                )
            if value is not None:
                _score_value(
                    scores, spec, value, predicted.get(name), row=predicted, path=f"{path}.{name}"
                )
    return scores


def _score_value(
    scores: Scores,
    spec: ColumnSpec,
    observed: Any,
    predicted: Any,
    *,
    row: dict[str, Any] | None,
    path: str,
) -> None:
    if spec.type in ("double", "float"):
        if isinstance(observed, bool):
            p = _number(predicted, path)
            if not 0.0 <= p <= 1.0:
                raise OutcomeError(
                    path, "a true/false outcome needs a probability output (a prediction in [0, 1])"
                )
            scores.labels += 1
            scores.correct += (p >= 0.5) == observed
            _log_loss(scores, p if observed else 1.0 - p)
            return
        value = _number(observed, path)
        error = value - _number(predicted, path)
        scores.regression_values += 1
        scores.abs_error += abs(error)
        scores.squared_error += error * error
        return
    _check_label(spec, observed, path)
    scores.labels += 1
    scores.correct += _same_label(spec, observed, predicted)
    if row is not None:
        proba = row.get(f"proba_{observed}")
        if isinstance(proba, int | float) and not isinstance(proba, bool):
            _log_loss(scores, float(proba))


def _same_label(spec: ColumnSpec, observed: Any, predicted: Any) -> bool:
    if spec.type in ("long", "integer"):  # 2 and 2.0 are the same label, True is not 1
        return (
            isinstance(predicted, int | float)
            and not isinstance(predicted, bool)
            and float(predicted) == float(observed)
        )
    return type(predicted) is type(observed) and bool(predicted == observed)


def _log_loss(scores: Scores, p: float) -> None:
    scores.log_loss_values += 1
    scores.log_loss += -math.log(min(max(p, LOG_LOSS_EPS), 1.0 - LOG_LOSS_EPS))


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutcomeError(path, "expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise OutcomeError(path, "expected a finite number")
    return number


def _check_label(spec: ColumnSpec, value: Any, path: str) -> None:
    if spec.type == "string":
        ok = isinstance(value, str)
    elif spec.type == "boolean":
        ok = isinstance(value, bool)
    else:  # long, integer: whole numbers (2.0 is 2, as JSON cannot tell them apart)
        ok = (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and math.isfinite(value)
            and float(value).is_integer()
        )
    if not ok:
        raise OutcomeError(path, f"expected a {spec.type} (output {spec.name!r})")
    if spec.categories is not None and value not in spec.categories:
        raise OutcomeError(path, f"not one of the output's categories ({spec.name!r})")
