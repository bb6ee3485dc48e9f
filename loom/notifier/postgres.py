"""PostgresListener: one LISTEN connection per worker process, on its own Django connection object.

It uses a connection object of its own (same settings as the alias, named "loom listener"),
in autocommit, never used for a query after LISTEN, so every notification arrives on its socket
and ``select`` sees it. ``drain()`` reads every notification already there and says whether one
concerns the queues this worker serves.
"""

from __future__ import annotations

from typing import Any

from loom import databases

CHANNEL = "loom"


class PostgresListener:
    interval = None

    def __init__(self, alias: str, queues: list[str] | None) -> None:
        self.alias = alias
        self.queues = set(queues) if queues else None
        self._wrapper: Any = None
        self._raw: Any = None

    def open(self) -> None:
        self.close()
        wrapper = databases.labelled(self.alias, "listener")
        wrapper.ensure_connection()
        raw = wrapper.connection
        raw.autocommit = True
        raw.execute(f"LISTEN {CHANNEL}")
        self._wrapper, self._raw = wrapper, raw

    def fileno(self) -> int | None:
        return self._raw.fileno() if self._raw is not None else None

    def drain(self) -> bool:
        relevant = False
        while True:
            notes = list(self._raw.notifies(timeout=0))
            if not notes:
                return relevant
            relevant = relevant or any(self.queues is None or n.payload in self.queues for n in notes)

    def close(self) -> None:
        if self._wrapper is not None:
            try:
                self._wrapper.close()
            except Exception:
                pass
        self._wrapper = self._raw = None
