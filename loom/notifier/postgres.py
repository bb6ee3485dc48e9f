"""PostgresNotifier: one LISTEN connection per worker, reconnecting with backoff.

It uses its own Django connection object (same settings as the alias, never shared with a
thread that runs queries) in autocommit, and wakes the worker for notifications about the
queues it serves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from loom import databases

from loom.service import Service

logger = logging.getLogger("loom.worker")

CHANNEL = "loom"


class PostgresNotifier(Service):
    name = "notifier"
    error_delay = 0.5

    def __init__(self, alias: str, on_wake: Callable[[], None], queues: list[str] | None) -> None:
        super().__init__()
        self.alias = alias
        self.on_wake = on_wake
        self.queues = set(queues) if queues else None
        self._wrapper = None

    def _listen(self):
        if self._wrapper is None or self._wrapper.connection is None or self._wrapper.connection.closed:
            self._wrapper = databases.labelled(self.alias, self.name)
            self._wrapper.ensure_connection()
            raw = self._wrapper.connection
            raw.autocommit = True
            raw.execute(f"LISTEN {CHANNEL}")
            self.on_wake()  # anything sent while we were not listening was missed
        return self._wrapper.connection

    def run_once(self) -> float:
        try:
            raw = self._listen()
            for note in raw.notifies(timeout=0.1, stop_after=64):
                if self.queues is None or note.payload in self.queues:
                    self.on_wake()
        except Exception:
            self._close()
            raise
        return 0

    def _close(self) -> None:
        if self._wrapper is not None:
            try:
                self._wrapper.close()
            except Exception:
                pass
            self._wrapper = None

    def on_stop(self) -> None:
        self._close()
