"""A multi-node Ray scenario on one machine, run in its own process by test_multinode.py.

A head node and two worker nodes (each advertising one ``searcher`` unit) run the encode job and
the shard build; then the query app serves two searcher groups, one per worker node. One worker
node is killed (its group must be reported missing, the other still answers) and a replacement
node joins (answers are complete again). Prints one JSON object with what it observed.

Usage: python multinode_scenario.py WORKDIR PORT
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _nodes_of(task_name_part: str) -> list[str]:
    from ray.util.state import list_tasks

    tasks = list_tasks(limit=10_000, detail=True, raise_on_missing_output=False)
    return sorted(
        {t.node_id for t in tasks if task_name_part in (t.name or "") and t.node_id is not None}
    )


def _search_until(client: Any, codes: Any, want_partial: bool, deadline_s: float) -> Any:
    """Search until the answer's `partial` flag is `want_partial` (nodes take time to die/join)."""
    deadline = time.monotonic() + deadline_s
    result = None
    while time.monotonic() < deadline:
        try:
            result = client.search(codes=codes, k=5, nprobe=4)
            if result.partial == want_partial:
                return result
        except Exception as exc:
            result = exc
        time.sleep(1.0)
    raise AssertionError(f"no answer with partial={want_partial} in {deadline_s}s: {result!r}")


def main(workdir: str, port: int) -> dict[str, Any]:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from indexer.build import build
    from indexer.codes import code_arrays, read_codes
    from indexer.converters.synthetic import make_synthetic
    from indexer.encode import EncodeConfig, encode
    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.models import create_encoder
    from serving.app import start_server
    from serving.client import ODHClient

    work = Path(workdir)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    workers = [cluster.add_node(num_cpus=1, resources={"searcher": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    out: dict[str, Any] = {"nodes": len(ray.nodes())}

    make_synthetic(str(work / "images"), n_classes=4, per_class=12, seed=0)
    import torch

    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=16, n_classes=4)
    config = EncoderConfig(
        name="resnet_small", n_bits=16, image_size=28, channels=1, mean=(0.5,), std=(0.5,),
        method="odh", layer="reactnet", binary=True, n_classes=4, provenance={"test": "multinode"},
    )  # fmt: skip
    save_checkpoint(model, config, str(work / "encoder"))
    summary = encode(EncodeConfig(
        str(work / "images"), str(work / "encoder"), str(work / "codes"),
        batch_size=8, concurrency=2, num_cpus=0.5,
    ))  # fmt: skip
    out["encoded"] = summary.encoded
    out["encode_nodes"] = _nodes_of("EncodeBatch")
    build(str(work / "codes"), str(work / "index"), n_shards=2, nlist=4, seed=0)
    out["build_nodes"] = _nodes_of("fill_shard")

    ids, codes = code_arrays(read_codes(str(work / "codes")), 16)
    queries = codes[:4]
    url = start_server(
        str(work / "index"), port=port, groups=2, timeout_s=2.0,
        searcher_resource=1, searcher_cpus=0.25,
    )  # fmt: skip
    client = ODHClient(url, timeout=30)
    full = _search_until(client, queries, want_partial=False, deadline_s=120)
    out["full_before"] = full.ids()

    from ray.util.state import list_actors

    victim = workers[0]
    lost_groups = {
        a.name
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
        if a.node_id == victim.node_id and "Searcher" in (a.class_name or "")
    }
    out["actors_on_victim"] = sorted(lost_groups)
    cluster.remove_node(victim, allow_graceful=False)
    partial = _search_until(client, queries, want_partial=True, deadline_s=120)
    out["partial_missing_groups"] = partial.missing_groups
    out["partial_ids"] = partial.ids()

    cluster.add_node(num_cpus=1, resources={"searcher": 1})
    healed = _search_until(client, queries, want_partial=False, deadline_s=180)
    out["full_after"] = healed.ids()
    out["ids"] = ids.tolist()

    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()
    return out


if __name__ == "__main__":
    result = main(sys.argv[1], int(sys.argv[2]))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
