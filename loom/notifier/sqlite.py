"""SQLiteNotifier: wakes the worker when another connection commits to the database file.

``PRAGMA data_version`` changes whenever a different connection commits; reading it touches no
table. Polling it every ``interval`` seconds (2 ms) keeps pickup latency low at a cost of a few
microseconds per check. An in-memory database cannot be shared with a worker and is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from django.db import connections
from django.core.exceptions import ImproperlyConfigured

from loom.service import Service

# Seconds between two looks at data_version.
DEFAULT_INTERVAL = 0.002


class SQLiteNotifier(Service):
    name = "notifier"

    def __init__(self, alias: str, on_wake: Callable[[], None], interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__()
        path = connections[alias].settings_dict["NAME"]
        if not path or str(path) == ":memory:" or "mode=memory" in str(path):
            raise ImproperlyConfigured(
                f"Database {alias!r} is an in-memory SQLite database; a worker runs in another "
                "process and cannot see it. Use a file path for NAME."
            )
        self.path = str(path)
        self.on_wake = on_wake
        self.interval = interval
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    def run_once(self) -> float:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self.on_wake()
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if self._version is not None and version != self._version:
            self.on_wake()
        self._version = version
        return self.interval

    def on_stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
