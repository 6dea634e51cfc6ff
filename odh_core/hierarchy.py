"""Class hierarchies: a tree over class names, written as ``{child: parent}``.

Every class name and every group name that has a parent is a key; a name that is nobody's child
hangs from the (implicit) root. A class missing from the map is a child of the root. The
semantic distance of two classes (used by SHREWD and by mAHP@k) is

    d(a, b) = 0 when a = b, else 1 − depth(LCA(a, b)) / H,

with the root at depth 0 and H the deepest class's depth (so classes whose only common ancestor is
the root are at distance 1). Label similarity is 1 − d.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["check_hierarchy", "hierarchy_distances", "hierarchy_similarity"]


def _ancestors(name: str, parents: Mapping[str, str]) -> list[str]:
    """``name``'s ancestors from itself up to (not including) the root."""
    chain, seen = [name], {name}
    while chain[-1] in parents:
        parent = parents[chain[-1]]
        if parent in seen:
            raise ValueError(f"hierarchy: a cycle through {parent!r}")
        seen.add(parent)
        chain.append(parent)
    return chain


def check_hierarchy(parents: Mapping[str, str], class_names: Sequence[str]) -> None:
    """ValueError naming the problem: a non-string entry, a cycle, or a class used as a group."""
    classes = set(class_names)
    for child, parent in parents.items():
        if not isinstance(child, str) or not isinstance(parent, str) or not parent:
            raise ValueError(f"hierarchy: entries must be name → parent name, got {child!r}")
        if parent in classes:
            raise ValueError(f"hierarchy: class {parent!r} cannot be the parent of {child!r}")
    for name in parents:
        _ancestors(name, parents)


def hierarchy_distances(parents: Mapping[str, str], class_names: Sequence[str]) -> np.ndarray:
    """``float64[C, C]`` tree distances in [0, 1] (see the module docstring)."""
    check_hierarchy(parents, class_names)
    chains = [_ancestors(c, parents) for c in class_names]
    depth = {c: len(chain) for c, chain in zip(class_names, chains, strict=True)}
    height = max(depth.values(), default=1)
    n = len(class_names)
    out = np.zeros((n, n))
    for i in range(n):
        anc_i = {a: len(chains[i]) - k for k, a in enumerate(chains[i])}  # name → its depth
        for j in range(n):
            if i == j:
                continue
            lca_depth = next((anc_i[a] for a in chains[j] if a in anc_i), 0)
            out[i, j] = 1.0 - lca_depth / height
    return out


def hierarchy_similarity(parents: Mapping[str, str], class_names: Sequence[str]) -> np.ndarray:
    """1 − :func:`hierarchy_distances`."""
    return 1.0 - hierarchy_distances(parents, class_names)
