"""Hashing methods as plug-ins: one module per method, registered by name.

``create_method(name, **cfg)`` builds one, ``list_methods()`` names them; the training loop calls
the method object (:class:`~odh_core.methods.base.HashMethod`) and names none. Every module of
this package is imported here, so adding a method is adding a file with a ``@register_method``
class.
"""

import importlib
import pkgutil

from odh_core.methods.registry import (
    create_method,
    get_method_class,
    list_methods,
    method_config,
    register_method,
)

_INFRASTRUCTURE = {"base", "doc", "registry"}
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _INFRASTRUCTURE and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "create_method",
    "get_method_class",
    "list_methods",
    "method_config",
    "register_method",
]
