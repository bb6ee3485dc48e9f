"""Subcommands of ``manage.py loom``: one module each in this package, found by name.

A module defines ``help`` (one line), ``add_arguments(parser)`` and ``run(command, options)``;
``run`` raises ``CommandError`` for a clear failure and exit code. The management command itself
stays a thin dispatcher.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def subcommands() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            found[info.name.replace("_", "-")] = importlib.import_module(f"{__name__}.{info.name}")
    return found


def counted(n: int, noun: str, plural: str = "") -> str:
    """``1 task``, ``2 tasks``: output reads as sentences, never ``1 task(s)``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
