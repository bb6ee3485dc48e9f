"""Cancels: reads the operators' cancel requests for this worker's running tasks and has InFlight
stop those runs (``TaskCancelled``; a coroutine is cancelled).

A service of its own because it waits on the database: a read that hangs (packets vanishing on
a cut link hold a query until the connection gives up, about 15 s on PostgreSQL) must never hold
up the watchdog, whose time limits and lapsed leases need no database at all. It reads nothing
while the heartbeat cannot reach the database (``database_away``): a cancel waits for the
database anyway, and an outage is logged once, by the heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable

from loom.service import Service
from loom.store import Store

# Seconds between two looks at the table for cancel requests.
DEFAULT_CANCEL_INTERVAL = 1.0


class Cancels(Service):
    name = "cancels"

    def __init__(self, inflight, worker_id: str, store: Store, *, interval: float = DEFAULT_CANCEL_INTERVAL,
                 database_away: Callable[[], bool] = lambda: False) -> None:
        super().__init__()
        self.inflight = inflight
        self.worker_id = worker_id
        self.store = store
        self.interval = interval
        self.database_away = database_away

    def run_once(self) -> float:
        if not self.database_away() and self.inflight.running_ids():
            for task_id in self.store.cancelled(self.worker_id):
                self.inflight.cancel(task_id)
        return self.interval


__all__ = ["Cancels", "DEFAULT_CANCEL_INTERVAL"]
