"""mire2e-viz: the miRe2e pre-miRNA cascade, with every stage exposed and visualised.

Importing the package is cheap: torch, matplotlib and Jupyter modules load
only when the names that need them are first used.

>>> from mire2e_viz import Cascade, scan     # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Cascade": ("mire2e_viz.cascade", "Cascade"),
    "CascadeResult": ("mire2e_viz.cascade", "CascadeResult"),
    "Window": ("mire2e_viz.cascade", "Window"),
    "scan": ("mire2e_viz.scan", None),  # the module is callable: scan(source, ...)
    "call_candidates": ("mire2e_viz.scan", "call_candidates"),
    "export": ("mire2e_viz.scan", "export"),
    "window_result": ("mire2e_viz.scan", "window_result"),
    "InputError": ("mire2e_viz.errors", "InputError"),
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from . import scan  # noqa: F401
    from .cascade import Cascade, CascadeResult, Window  # noqa: F401
    from .errors import InputError  # noqa: F401
    from .scan import call_candidates, export, window_result  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = import_module(module) if attr is None else getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mire2e_viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
