"""ODH core: the hashing method (models, losses, training, metrics), no Ray or FAISS.

Public API (timm-style explicit re-exports). Names are imported lazily on first use (PEP 562), so
``import odh_core.<module>`` stays as light as that module.
"""

from __future__ import annotations

from odh_core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Encoder": "odh_core.encoder",
    "TrainConfig": "odh_core.config",
    "TrainRunConfig": "odh_core.config",
    "check_n_bits": "odh_core.packing",
    "create_encoder": "odh_core.models",
    "evaluate_codes": "odh_core.metrics",
    "list_encoders": "odh_core.models",
    "list_layers": "odh_core.layers",
    "create_method": "odh_core.methods",
    "list_methods": "odh_core.methods",
    "register_method": "odh_core.methods",
    "list_modes": "odh_core.config",
    "option": "odh_core.options",
    "pack_bits": "odh_core.packing",
    "train_encoder": "odh_core.train",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
