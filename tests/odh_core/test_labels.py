"""``odh_core.labels.labels_to_multihot``: the one label conversion (ids, multi-hot, lists)."""

import numpy as np
import pyarrow as pa
import pytest

from indexer.imageset import label_column_to_multihot
from odh_core.labels import labels_to_multihot


def test_class_ids_multihot_and_label_lists_agree() -> None:
    ids = np.array([0, 2, 1, 2])
    one_hot = labels_to_multihot(ids)
    assert one_hot.dtype == bool and one_hot.tolist() == np.eye(3, dtype=bool)[ids].tolist()
    assert labels_to_multihot(ids, 5).shape == (4, 5)
    np.testing.assert_array_equal(labels_to_multihot(one_hot.astype(np.float32), 3), one_hot)
    np.testing.assert_array_equal(labels_to_multihot([[0], [2], [1], [2]], 3), one_hot)
    multi = labels_to_multihot([[0, 2], None, [], [1, 1]], 3)
    assert multi.tolist() == [[True, False, True], [False] * 3, [False] * 3, [False, True, False]]


def test_label_column_goes_through_the_same_conversion() -> None:
    col = pa.chunked_array(
        [pa.array([[0, 2], None], pa.list_(pa.int32())), pa.array([[1]], pa.list_(pa.int32()))]
    )
    got = label_column_to_multihot(col, 3)
    np.testing.assert_array_equal(got, labels_to_multihot([[0, 2], None, [1]], 3))
    assert label_column_to_multihot(pa.chunked_array([], pa.list_(pa.int32())), 3).shape == (0, 3)


def test_bad_labels_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"label: values outside \[0, 3\)"):
        labels_to_multihot([[0, 5]], 3)
    with pytest.raises(ValueError, match=r"label: values outside"):
        labels_to_multihot(np.array([-1, 0]))
    with pytest.raises(ValueError, match="label: multi-hot labels have 3 columns, expected 4"):
        labels_to_multihot(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="label: labels must be integers"):
        labels_to_multihot(np.array([0.5, 1.0]))
