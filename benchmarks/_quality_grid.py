"""Run grids of the quality benchmark: one ``RunSpec`` per training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROTOCOL = "fmnist-1"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    label: str  # ODH-BNN, CSQ-BNN, ODH-FP, CSQ-FP
    method: str
    binary: bool
    n_bits: int
    seed: int = 0
    layer: str = "reactnet"
    variant: str = "default"  # ablation tag
    overrides: dict[str, Any] = field(default_factory=dict)


def _pair(k: int, seed: int = 0) -> list[RunSpec]:
    return [RunSpec("ODH-BNN", "odh", True, k, seed), RunSpec("CSQ-BNN", "csq", True, k, seed)]


def method_label(method: str, binary: bool) -> str:
    """``odh`` → ``ODH-BNN`` / ``ODH-FP``."""
    return f"{method.upper()}-{'BNN' if binary else 'FP'}"


def methods_grid(bits: tuple[int, ...], seeds: int) -> list[RunSpec]:
    """Every registered method × {BNN, FP twin} × ``bits`` × seeds 0…seeds−1; seed s is the same
    seed (same split, same initialisation seed) for every method, so runs pair across methods."""
    from odh_core.methods import list_methods

    return [
        RunSpec(method_label(m, binary), m, binary, k, seed)
        for k in bits
        for seed in range(seeds)
        for binary in (True, False)
        for m in list_methods()
    ]


#: ``TrainConfig.init_from`` of a run initialised from its full-precision twin: the run trains
#: ODH-FP (same bits and seed) first and starts from its weights (``_quality_run``).
FP_TWIN = "fp-twin (ODH-FP of the same seed, trained first by the run)"

#: The ODH-BNN variants of the ``odh-ablations`` grid: variant → RunSpec overrides (issue 11).
ODH_ABLATIONS: dict[str, dict[str, Any]] = {
    "no-stage2": {"stage2": False},
    "hc-strong+separate-views": {"method_config": {"hc_strong": True, "separate_views": True}},
    "w-agg-0.1": {"method_config": {"w_agg": 0.1}},
    "w-agg-1": {"method_config": {"w_agg": 1.0}},
    "n-pos-4": {"n_pos": 4},
    "n-pos-8": {"n_pos": 8},
    "distill": {"method_config": {"w_distill": 1.0}},
    "two-step": {"two_step": True},
    "wide": {"model": "resnet_small_wide"},
    "init-from-fp": {"init_from": FP_TWIN},
}


def odh_ablations_grid(seeds: int, n_bits: int = 64) -> list[RunSpec]:
    """Per seed 0…seeds−1: the baseline ODH-BNN, its full-precision twin ODH-FP (the gap) and
    every variant of :data:`ODH_ABLATIONS`. The baseline and ODH-FP are the methods grid's own
    runs (same spec, variant ``default``, hence the same ``config_key``): ``--append`` shares
    them with a methods grid, and seed s is the same split and initialisation seed in both."""
    specs = []
    for seed in range(seeds):
        specs += [
            RunSpec("ODH-BNN", "odh", True, n_bits, seed),
            RunSpec("ODH-FP", "odh", False, n_bits, seed),
        ]
        specs += [
            RunSpec("ODH-BNN", "odh", True, n_bits, seed, variant=v, overrides=dict(o))
            for v, o in ODH_ABLATIONS.items()
        ]
    return specs


GRIDS = (
    "smoke",
    "cpu",
    "core",
    "ablations",
    "full",
    "resnet18",
    "methods",
    "methods-64",
    "odh-ablations",
)


def grid(name: str, seeds: int = 3) -> list[RunSpec]:
    """The named run grid: smoke, cpu, core, ablations, full, resnet18, methods (every method ×
    {BNN, FP} × {64, 32} bits × ``seeds``), methods-64 (the same at 64 bits only),
    odh-ablations (ODH-BNN at 64 bits: baseline, ODH-FP and the variants of
    :data:`ODH_ABLATIONS`, × ``seeds``, paired with the methods grid)."""
    if name == "odh-ablations":
        return odh_ablations_grid(seeds)
    if name == "methods":
        return methods_grid((64, 32), seeds)
    if name == "methods-64":
        return methods_grid((64,), seeds)
    core = _pair(16) + _pair(32) + _pair(64) + _pair(64, 1) + _pair(64, 2)
    core += [RunSpec("CSQ-FP", "csq", False, 64), RunSpec("ODH-FP", "odh", False, 64)]
    ablations = [
        RunSpec("ODH-BNN", "odh", True, 64, variant="no-stage2", overrides={"stage2": False}),
        RunSpec(
            "ODH-BNN",
            "odh",
            True,
            64,
            variant="hadamard-centres",
            overrides={"method_config": {"centres": "hadamard"}},
        ),
        RunSpec("ODH-BNN", "odh", True, 64, layer="xnor", variant="layer-xnor"),
        RunSpec("ODH-BNN", "odh", True, 64, layer="bireal", variant="layer-bireal"),
        RunSpec("ODH-BNN", "odh", True, 64, layer="irnet", variant="layer-irnet"),
        RunSpec(
            "ODH-BNN",
            "odh",
            True,
            64,
            layer="xnor",
            variant="faithful-xnor",
            overrides={"mode": "faithful"},
        ),
    ]
    grids = {
        "smoke": [RunSpec("ODH-BNN", "odh", True, 16), RunSpec("CSQ-BNN", "csq", True, 16)],
        "cpu": _pair(64),
        "core": core,
        "ablations": ablations,
        "full": core + ablations,
        "resnet18": _pair(64),
    }
    if name not in grids:
        raise ValueError(f"--runs must be one of {list(GRIDS)}, got {name!r}")
    return grids[name]
