"""Why a row scored what it did: per-feature contributions along its path through the trees.

For each tree, walking from the root to a leaf, every split moves the tree's expected output
(its leaves' values weighted by their training rows) from the node's to the child's; that
move is credited to the split's feature (the "Saabas" path attribution). The credits of one leaf do not depend on the row, so they are
computed once per model into a table ``[tree, leaf, feature]``; explaining rows is then one
``pred_leaf`` call and one gather per tree. The credits of a row add up exactly to its raw
score minus the sum of the trees' expected outputs, like SHAP values (``pred_contrib``), which
coincide with them for single-split trees but cost ``O(trees x leaves x depth^2)`` per row:
measured 9 ms per row for a 200-tree model, against microseconds here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


class PathAttribution:
    """Per-leaf credit table of a LightGBM booster, and rows explained with it."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        dump = booster.dump_model()
        self.features = int(dump["max_feature_idx"]) + 1
        trees = dump["tree_info"]
        leaves = max((int(t.get("num_leaves", 1)) for t in trees), default=1)
        self.table = np.zeros((len(trees), leaves, self.features), dtype=np.float64)
        self.bias = 0.0
        for t, tree in enumerate(trees):
            root = tree["tree_structure"]
            values: dict[int, float] = {}
            _expect(root, values)
            self.bias += values[id(root)]
            self._walk(t, root, np.zeros(self.features, dtype=np.float64), values)

    def _walk(
        self,
        t: int,
        node: dict[str, Any],
        credit: npt.NDArray[np.float64],
        values: dict[int, float],
    ) -> None:
        if "split_feature" not in node:  # a leaf (a one-leaf tree has no leaf_index)
            self.table[t, int(node.get("leaf_index", 0))] = credit
            return
        here = values[id(node)]
        feature = int(node["split_feature"])
        for side in ("left_child", "right_child"):
            child = node[side]
            step = credit.copy()
            step[feature] += values[id(child)] - here
            self._walk(t, child, step, values)

    def __call__(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Contributions ``[rows, features]`` in raw-score (log-odds) units."""
        out = np.zeros((len(x), self.features), dtype=np.float64)
        if not len(x):
            return out
        leaf = np.asarray(self.booster.predict(x, pred_leaf=True, num_threads=1), dtype=np.int64)
        leaf = leaf.reshape(len(x), -1)
        for t in range(leaf.shape[1]):
            out += self.table[t, leaf[:, t]]
        return out


def _expect(node: dict[str, Any], values: dict[int, float]) -> float:
    """A node's value: its leaf value, or its leaves' mean weighted by training rows (the
    expectation SHAP uses); stored in ``values`` by node id. Returns the node's row count."""
    if "split_feature" not in node:
        values[id(node)] = float(node.get("leaf_value", 0.0))
        return float(node.get("leaf_count", 0) or 0)
    left, right = node["left_child"], node["right_child"]
    n_left, n_right = _expect(left, values), _expect(right, values)
    total = n_left + n_right
    if total > 0:
        values[id(node)] = (values[id(left)] * n_left + values[id(right)] * n_right) / total
    else:
        values[id(node)] = (values[id(left)] + values[id(right)]) / 2
    return total
