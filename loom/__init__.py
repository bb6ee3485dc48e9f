"""django-loom: durable background work and in-request concurrency for Django.

The public API is deliberately small. Users write plain ``@django.tasks.task`` functions and
point ``TASKS`` at ``loom.backends.DatabaseBackend``; everything else lives in submodules
(``loom.step`` comes from ``loom.steps``).
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``loom.step``: durable steps inside a task (loom.steps), imported on first use."""
    if name == "step":
        from loom.steps import step

        return step
    raise AttributeError(f"module 'loom' has no attribute {name!r}")
