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


GRIDS = ("smoke", "cpu", "core", "ablations", "full", "resnet18", "methods", "methods-64")


def grid(name: str, seeds: int = 3) -> list[RunSpec]:
    """The named run grid: smoke, cpu, core, ablations, full, resnet18, methods (every method ×
    {BNN, FP} × {64, 32} bits × ``seeds``), methods-64 (the same at 64 bits only)."""
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
