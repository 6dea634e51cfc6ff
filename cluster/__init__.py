"""Cluster: the `odh` command line, the Ray runtime, the index job, the demo.

Public API (timm-style explicit re-exports). Names are imported lazily on first use (PEP 562), so
``import cluster.<module>`` stays as light as that module.
"""

from __future__ import annotations

from odh_core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DemoConfig": "cluster.demo",
    "IndexJobConfig": "cluster.index_job",
    "LocalClusterConfig": "cluster.local_cluster",
    "RuntimeConfig": "cluster.runtime",
    "index": "cluster.index_job",
    "main": "cluster.cli",
    "ray_runtime": "cluster.runtime",
    "run_demo": "cluster.demo",
    "submit_index_job": "cluster.index_job",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
