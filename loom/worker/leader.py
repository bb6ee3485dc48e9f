"""Leader: elects one worker cluster-wide to run the maintenance services, with takeover.

Leadership is a lease row (``loom_leader``, name "maintenance") renewed every third of the
lease; when its holder dies the lease expires and another worker takes it. This works the same
on PostgreSQL, SQLite and MariaDB, where an advisory lock would need a connection held open for
the whole term. While it leads, the worker runs each maintenance service when it is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from loom.store import Store
from loom.worker.maintenance.archiver import Archiver
from loom.worker.maintenance.pruner import Pruner
from loom.worker.maintenance.rescuer import Rescuer
from loom.worker.maintenance.scheduler import Scheduler
from loom.service import Service

logger = logging.getLogger("loom.worker")

ROLE = "maintenance"


class Leader(Service):
    name = "leader"

    def __init__(self, store: Store, worker_id: str, backend, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.store = store
        self.worker_id = worker_id
        self.clock = clock
        self.lease_seconds = backend.config.lease_seconds
        self.is_leader = False
        self.services = [Rescuer(store, clock, extra_attempts=backend.config.lost_retries), Scheduler(store, backend, clock),
                         Pruner(store, backend.config, clock), Archiver(store, backend.config, clock)]
        self._due = {id(s): datetime.min for s in self.services}

    def run_once(self) -> float:
        now = self.clock()
        leading = self.store.elect(ROLE, self.worker_id, now, now + timedelta(seconds=self.lease_seconds))
        if leading != self.is_leader:
            logger.info("loom worker %s %s maintenance leadership", self.worker_id,
                        "took" if leading else "lost")
        self.is_leader = leading
        renew = self.lease_seconds / 3
        if not leading:
            return renew
        wait = renew
        for service in self.services:
            due = self._due[id(service)]
            if due.tzinfo is None and now.tzinfo is not None:
                due = due.replace(tzinfo=now.tzinfo)
            if now >= due:
                delay = service.run_once()
                self._due[id(service)] = now + timedelta(seconds=delay)
                wait = min(wait, delay)
            else:
                wait = min(wait, (due - now).total_seconds())
        return max(wait, 0.05)

    def on_stop(self) -> None:
        if self.is_leader:
            try:
                self.store.resign(ROLE, self.worker_id)
            except Exception:
                pass  # the lease expires on its own
