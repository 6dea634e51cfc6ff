"""Retrieval quality of an encode job's codes under the image set's protocol."""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from indexer.codes import code_arrays, read_codes, read_encode_info
from indexer.imageset import label_column_to_multihot, read_info

logger = logging.getLogger(__name__)


def evaluate(
    codes: str,
    image_set: str,
    *,
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Split codes into query/database by the ``_dataset.json`` protocol and score them.

    Returns ``odh_core.metrics.evaluate_codes``'s dict plus ``n_query``, ``n_database`` and
    ``protocol``; with a class hierarchy in ``_dataset.json`` (and one label per image) also
    ``mahp_250`` (tie-aware mAHP@250, as the SHREWD papers report it).
    """
    from odh_core.metrics import evaluate_codes, mean_average_hierarchical_precision

    info = read_info(image_set, storage_options)
    if info.protocol is None:
        raise ValueError(f"{image_set}: _dataset.json has no 'protocol'")
    n_bits = int(read_encode_info(codes, storage_options)["n_bits"])
    table = read_codes(
        codes, columns=["id", "code", "label", "split"], storage_options=storage_options
    )
    split = table.column("split")
    parts: dict[str, pa.Table] = {}
    for role, names in (
        ("query", info.protocol.query_splits),
        ("database", info.protocol.database_splits),
    ):
        parts[role] = table.filter(pc.is_in(split, pa.array(list(names), pa.string())))
        if parts[role].num_rows == 0:
            raise ValueError(f"{codes}: no codes in the {role} splits {list(names)}")
    q_ids, q_codes = code_arrays(parts["query"], n_bits)
    d_ids, d_codes = code_arrays(parts["database"], n_bits)
    q_labels = label_column_to_multihot(parts["query"].column("label"), info.n_classes)
    d_labels = label_column_to_multihot(parts["database"].column("label"), info.n_classes)
    logger.info(
        "evaluate: protocol %s, %d queries, %d database codes of %d bits",
        info.protocol.name, len(q_ids), len(d_ids), n_bits,
    )  # fmt: skip
    result = dict(evaluate_codes(q_codes, q_labels, d_codes, d_labels, n_bits=n_bits, seed=seed))
    result.update({"n_query": len(q_ids), "n_database": len(d_ids), "protocol": info.protocol.name})
    distances = info.label_distances()
    single = (q_labels.sum(axis=1) == 1).all() and (d_labels.sum(axis=1) == 1).all()
    if distances is not None and single:
        result["mahp_250"] = mean_average_hierarchical_precision(
            q_codes, q_labels, d_codes, d_labels, 1.0 - distances, n_bits=n_bits, k=250
        )
    return result
