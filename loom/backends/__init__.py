"""Task backends for ``TASKS[...]["BACKEND"]``. Importing this package touches no database."""

from loom.backends.database import DatabaseBackend
from loom.backends.thread import ThreadBackend

__all__ = ["DatabaseBackend", "ThreadBackend"]
