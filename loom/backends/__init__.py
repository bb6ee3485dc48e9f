"""Task backends for ``TASKS[...]["BACKEND"]``. Importing this package touches no database."""

from loom.backends.database import DatabaseBackend

__all__ = ["DatabaseBackend"]
