"""Machine and command information recorded with every benchmark result."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from typing import Any


def machine_info() -> dict[str, Any]:
    """CPU count, memory, platform and library versions of this run."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    import psutil

    info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    for name in ("numpy", "faiss", "torch", "ray"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "?")
    return info


def command_line() -> str:
    """The command as the user typed it (``odh bench ...``)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("odh"):
        argv[0] = "odh"
    elif argv and argv[0].endswith(".py") and "benchmarks" in argv[0]:
        # ``python -m benchmarks.NAME`` puts the module's absolute path in argv[0]
        argv = ["python", "-m", "benchmarks." + os.path.basename(argv[0])[: -len(".py")], *argv[1:]]
    return shlex.join(argv)
