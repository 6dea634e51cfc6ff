"""Reproducible seeded CPU training: the settings a run fixes and the record of them.

Measured (``docs/method.md``, "Reproducibility"): with the same code, data, seed and torch
thread count, seeded CPU training gives bit-identical weights run after run, in-process or
through Ray Train. What still changes the result is the arithmetic the machine does: the
torch thread count (a reduction split over 1 or 2 threads rounds differently) and the CPU
instruction set oneDNN's convolution kernels are built for (AVX-512 vs AVX2 give different
roundings); BNN training amplifies a last-bit difference (a sign flips) into a different model.
So every run records :func:`determinism_info` beside its seed, and ``ONEDNN_MAX_CPU_ISA`` (set
before torch starts) pins the kernels when two machines must agree.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["determinism_info", "deterministic_torch"]

#: Environment variables that change CPU kernels (and so results); recorded when set.
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS")


@contextmanager
def deterministic_torch(num_threads: int, device_type: str = "cpu") -> Iterator[None]:
    """Inside: ``num_threads`` torch threads and, on CPU, deterministic algorithms only
    (``torch.use_deterministic_algorithms(True, warn_only=True)``; uninitialised memory is not
    filled, which costs time and changes no result). Both are restored on exit, so an
    in-process caller (tests, the quality benchmark) keeps its own settings.

    GPU runs keep cuDNN autotuning (speed) and are not bit-reproducible (docs/method.md).
    """
    import torch

    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.set_num_threads(num_threads)
    if device_type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill
        torch.set_num_threads(prev_threads)


def determinism_info() -> dict[str, Any]:
    """What decides the arithmetic of this process's training (for run records)."""
    import torch

    return {
        "torch": torch.__version__,
        "num_threads": int(torch.get_num_threads()),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
        "cpu_model": _cpu_model(),
    }


def _cpu_model() -> str | None:
    """The CPU's model name and whether it has AVX-512 (Linux ``/proc/cpuinfo``), else None."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read(1 << 16)
    except OSError:
        return None
    name = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
        "?",
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    return f"{name} ({'avx512f' if 'avx512f' in flags else 'no avx512f'})"
