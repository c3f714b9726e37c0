"""Decision trees a model file carries: their node arrays are checked before anything predicts.

scikit-learn's tree nodes hold raw indices (children, split feature) that its Cython code
follows without bounds checks, so a crafted file with an index out of range makes `predict`
read outside the tree or the row (a crash, or memory disclosed in a prediction), and a child
that points back makes it loop for ever. skops refuses the two node stores for that reason
(`skops.io.exceptions.UNTRUSTED_TYPE_REASONS`: `sklearn.tree._tree.Tree`, behind every
DecisionTree*, RandomForest*, ExtraTrees*, GradientBoosting*, AdaBoost and IsolationForest
model, and HistGradientBoosting's `TreePredictor`); it can check a type, not content. This
module checks the content, so those two types are trusted (`CHECKED_TYPES`), for pickles and
skops files alike:

* every internal node's children lie inside the tree and after it (sklearn's builders append
  children after their parent, so a tree that passes cannot cycle);
* every split feature is a column the tree is given: below the tree's own `n_features` and the
  `n_features_in_` of each tree-based estimator holding it (an ensemble validates the input
  width once, then calls its trees without checks);
* `node_count` does not exceed the allocated nodes (sklearn sizes its views by it);
* HistGradientBoosting nodes with categorical splits are refused: they index bitsets and
  feature maps as well, which this does not check.
"""

from __future__ import annotations

import math
from typing import Any

from registry_sync.runtimes.safe_load.policy import RefusedError

__all__ = ["CHECKED_TYPES", "check_trees"]

CHECKED_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)
# An estimator holding trees it calls without validating the input again: its input width
# bounds their split features. Any other estimator validates its own input (the bound resets).
_TREE_HOLDERS = ("tree_", "estimators_", "estimator_", "_predictors")
_LEAF = -1  # sklearn.tree._tree.TREE_LEAF
_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None))


def check_trees(model: Any) -> None:
    """RefusedError naming the first tree whose nodes point outside it or its input."""
    import numpy as np

    tree_type, predictor_type = _tree_types()
    seen: set[int] = set()
    stack: list[tuple[Any, float]] = [(model, math.inf)]
    while stack:
        obj, limit = stack.pop()
        if isinstance(obj, _PLAIN) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if tree_type is not None and isinstance(obj, tree_type):
            _check_tree(obj, limit)
        elif predictor_type is not None and isinstance(obj, predictor_type):
            _check_predictor(obj, limit)
        elif isinstance(obj, dict):
            stack.extend((value, limit) for value in obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend((item, limit) for item in obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((item, limit) for item in obj.ravel())
        else:
            state = getattr(obj, "__dict__", None)
            if isinstance(state, dict):
                stack.extend((value, _limit_below(state, limit)) for value in state.values())


def _tree_types() -> tuple[type | None, type | None]:
    try:
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
        from sklearn.tree._tree import Tree
    except ImportError:  # no scikit-learn: no sklearn trees either
        return None, None
    return Tree, TreePredictor


def _limit_below(state: dict[str, Any], limit: float) -> float:
    if not any(name in state for name in _TREE_HOLDERS):
        return math.inf
    width: Any = state.get("n_features_in_")
    return min(limit, int(width)) if hasattr(width, "__index__") else limit


def _check_tree(tree: Any, limit: float) -> None:
    import numpy as np

    count = int(tree.node_count)
    if not 0 < count <= int(tree.capacity):
        raise RefusedError("sklearn.tree._tree.Tree", f"node_count {count} is not its node array")
    width = min(limit, int(tree.n_features))
    internal = np.asarray(tree.children_left) != _LEAF
    _check_nodes(
        "sklearn.tree._tree.Tree",
        internal,
        np.asarray(tree.children_left),
        np.asarray(tree.children_right),
        feature=np.asarray(tree.feature),
        width=width,
    )


def _check_predictor(predictor: Any, limit: float) -> None:
    import numpy as np

    subject = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    nodes = predictor.nodes
    wanted = {"left", "right", "feature_idx", "is_leaf", "is_categorical"}
    if not isinstance(nodes, np.ndarray) or not wanted <= set(nodes.dtype.names or ()):
        raise RefusedError(subject, "its nodes are not a node array")
    if len(nodes) == 0:
        raise RefusedError(subject, "it has no nodes")
    internal = nodes["is_leaf"] == 0
    if np.any(nodes["is_categorical"][internal] != 0):
        raise RefusedError(subject, "categorical splits are not checked, so not loaded")
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    _check_nodes(subject, internal, left, right, feature=nodes["feature_idx"], width=limit)


def _check_nodes(
    subject: str, internal: Any, left: Any, right: Any, *, feature: Any, width: float
) -> None:
    import numpy as np

    count = len(left)
    index = np.arange(count)[internal]
    left, right, feature = left[internal], right[internal], feature[internal]
    outside = (left <= index) | (left >= count) | (right <= index) | (right >= count)
    if np.any(outside):
        node = int(index[np.argmax(outside)])
        raise RefusedError(subject, f"node {node}'s children are not later nodes of the tree")
    if math.isinf(width):
        raise RefusedError(subject, "its input width is unknown")
    wrong = (feature < 0) | (feature >= width)
    if np.any(wrong):
        node = int(index[np.argmax(wrong)])
        raise RefusedError(
            subject, f"node {node} splits on feature {int(feature[np.argmax(wrong)])} of {width}"
        )
