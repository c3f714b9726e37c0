"""Tree ensembles load (skops and pickle) only when their node arrays stay inside the tree
and its input: what skops refuses Tree and TreePredictor for, checked instead of trusted."""

from __future__ import annotations

import pickle
import zipfile
from typing import Any

import numpy as np
import pytest
import skops.io

from registry_sync.package.data import mtcars
from registry_sync.runtimes import LoadPolicy
from registry_sync.runtimes.safe_load.policy import RefusedError
from registry_sync.runtimes.safe_load.skops_file import loads_skops
from registry_sync.runtimes.safe_load.unpickler import restricted_loads

TREE = "sklearn.tree._tree.Tree"


def example_frame(n: int) -> Any:
    return mtcars().head(n)[["hp", "wt", "disp", "qsec"]].astype("float64")


def _fit(kind: str) -> Any:
    from sklearn import ensemble, tree

    features = example_frame(32)
    target = features["hp"] / 10 + features["wt"]
    model = {
        "gbr": ensemble.GradientBoostingRegressor(n_estimators=5, random_state=0),
        "forest": ensemble.RandomForestRegressor(n_estimators=3, random_state=0),
        "tree": tree.DecisionTreeRegressor(random_state=0),
        "hist": ensemble.HistGradientBoostingRegressor(max_iter=3, min_samples_leaf=4),
    }[kind]
    return model.fit(features, target), features


def _dump(model: Any) -> bytes:
    return skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED)


@pytest.mark.parametrize("kind", ["gbr", "forest", "tree", "hist"])
def test_tree_ensembles_load_from_skops_and_pickle_and_predict_the_same(kind: str) -> None:
    model, features = _fit(kind)
    for loaded in (loads_skops(_dump(model)), restricted_loads(pickle.dumps(model))):
        # The same trees in the same library: bit-identical predictions.
        np.testing.assert_array_equal(loaded.predict(features), model.predict(features))


def _tamper(model: Any, field: str, value: int) -> Any:
    """The fitted tree with node 0's `field` set to `value` (what a crafted file holds)."""
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][0] = value
    model.tree_.__setstate__({**state, "nodes": nodes})
    return model


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("left_child", 10**6, "children are not later nodes"),
        ("right_child", 0, "children are not later nodes"),  # a cycle: predict never ends
        ("feature", 40, "splits on feature 40 of 4"),
        ("feature", -5, "splits on feature -5"),
    ],
)
def test_a_tree_whose_nodes_point_outside_it_is_refused_in_either_format(
    field: str, value: int, reason: str
) -> None:
    model, _ = _fit("tree")
    crafted = _tamper(model, field, value)
    for data, load in ((_dump(crafted), loads_skops), (pickle.dumps(crafted), restricted_loads)):
        with pytest.raises(RefusedError, match=reason) as caught:
            load(data)
        assert caught.value.subject == TREE


def test_a_tree_inside_an_ensemble_is_bounded_by_the_ensembles_input_width() -> None:
    model, _ = _fit("forest")
    member = model.estimators_[1]
    # The member claims a wider input than the forest validates: its split on feature 6
    # would read past each 4-column row, since forests call their trees unchecked.
    member.n_features_in_ = 8
    member.tree_ = type(member.tree_)(8, member.tree_.n_classes, member.tree_.n_outputs)
    source = _fit("tree")[0].tree_.__getstate__()
    nodes = source["nodes"].copy()
    nodes["feature"][0] = 6
    member.tree_.__setstate__({**source, "nodes": nodes})
    with pytest.raises(RefusedError, match="splits on feature 6 of 4"):
        loads_skops(_dump(model))


def test_a_histogram_tree_with_a_child_out_of_range_is_refused() -> None:
    model, _ = _fit("hist")
    predictor = model._predictors[0][0]
    predictor.nodes["left"][0] = 10**6
    with pytest.raises(RefusedError, match="children are not later nodes") as caught:
        loads_skops(_dump(model))
    assert caught.value.subject.endswith("TreePredictor")


def test_a_type_skops_flags_and_stageserve_does_not_check_is_refused_unless_listed() -> None:
    from sklearn.neighbors import KNeighborsRegressor

    features = example_frame(16)
    model = KNeighborsRegressor(n_neighbors=2, algorithm="kd_tree").fit(features, features["hp"])
    data = _dump(model)
    # A k-d tree holds raw node indices too, and its distance metric is a Cython object.
    flagged = ("sklearn.metrics._dist_metrics.EuclideanDistance64", "sklearn.neighbors._kd_tree")
    with pytest.raises(RefusedError, match="unpickle_allow") as caught:
        loads_skops(data)
    assert caught.value.subject == flagged[0]
    listed = LoadPolicy(extra=flagged)
    assert loads_skops(data, listed).predict(features.head(1))[0] == features["hp"].iloc[0]
