"""Scoring an outcome against a prediction, per the output signature."""

from __future__ import annotations

import math

import pytest

from gateway.history.scoring import LOG_LOSS_EPS, OutcomeError, score
from registry_sync.package.manifest import ColumnSpec

MPG = [ColumnSpec(name="prediction", type="double")]
GEARBOX = [ColumnSpec(name="prediction", type="string", categories=["automatic", "manual"])]


def test_numbers_are_scored_as_regression_and_null_rows_are_skipped() -> None:
    s = score(MPG, [20.0, 18.0, 30.0], [21.5, None, 27.0])
    assert (s.regression_values, s.labels) == (2, 0)
    # 1.5 and 3.0 exactly representable: exact sums.
    assert (s.abs_error, s.squared_error) == (4.5, 1.5**2 + 3.0**2)


def test_labels_are_scored_by_exact_match_within_the_categories() -> None:
    s = score(GEARBOX, ["manual", "automatic"], ["manual", "manual"])
    assert (s.labels, s.correct, s.log_loss_values) == (2, 1, 0)
    with pytest.raises(OutcomeError, match="categories") as caught:
        score(GEARBOX, ["manual"], ["semi-automatic"])
    assert caught.value.path == "$.outcome[0]"


def test_a_true_false_outcome_of_a_probability_output_gives_accuracy_and_log_loss() -> None:
    s = score(MPG, [0.9, 0.2], [True, True])
    assert (s.labels, s.correct, s.log_loss_values) == (2, 1, 2)
    # Same formula as sklearn.metrics.log_loss; only the summation order could differ.
    assert math.isclose(s.log_loss, -math.log(0.9) - math.log(0.2), rel_tol=1e-12)
    with pytest.raises(OutcomeError, match="probability"):
        score(MPG, [21.4], [True])


def test_proba_outputs_give_the_log_loss_of_the_observed_class() -> None:
    outputs = [
        ColumnSpec(name="label", type="string"),
        ColumnSpec(name="proba_manual", type="double"),
        ColumnSpec(name="proba_automatic", type="double"),
    ]
    predicted = [{"label": "manual", "proba_manual": 1.0, "proba_automatic": 0.0}]
    s = score(outputs, predicted, [{"label": "automatic"}])
    assert (s.correct, s.log_loss_values) == (0, 1)
    # A certain miss is clipped, not infinite.
    assert math.isclose(s.log_loss, -math.log(LOG_LOSS_EPS), rel_tol=1e-12)
    with pytest.raises(OutcomeError, match="no such output") as caught:
        score(outputs, predicted, [{"labl": "manual"}])
    assert caught.value.path == "$.outcome[0].labl"


@pytest.mark.parametrize(
    ("outcome", "path", "reason"),
    [
        ({"y": 1}, "$.outcome", "a list"),
        ([1.0, 2.0], "$.outcome", "expected 1 entries"),
        ([None], "$.outcome", "nothing to record"),
        (["fast"], "$.outcome[0]", "a number"),
        ([float("inf")], "$.outcome[0]", "finite"),
    ],
)
def test_outcomes_that_do_not_fit_name_the_place(outcome: object, path: str, reason: str) -> None:
    with pytest.raises(OutcomeError, match=reason) as caught:
        score(MPG, [20.0], outcome)
    assert caught.value.path == path


def test_integer_labels_accept_integral_floats_but_not_booleans() -> None:
    outputs = [ColumnSpec(name="cyl", type="long")]
    assert score(outputs, [6], [6.0]).correct == 1
    with pytest.raises(OutcomeError, match="long"):
        score(outputs, [1], [True])
