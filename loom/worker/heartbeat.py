"""Heartbeat: registers the worker, then renews the leases of the tasks it holds, every third of
the lease, and refreshes the worker's own row.

A worker that stops beating (SIGKILL, OOM, lost machine, cut off from the database) lets its
leases expire, and the rescuer puts those tasks back. Only held tasks are renewed (InFlight's
list): a row claimed by this worker that it never learned of keeps its old lease and is rescued.
Registration is the first beat, retried like any other, so a worker never dies at start-up
because the database was briefly unavailable. Configure the lease with OPTIONS["LEASE_SECONDS"].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from loom.service import Service
from loom.store import Store


class Heartbeat(Service):
    name = "heartbeat"
    max_retry_delay = 2.0

    def __init__(self, store: Store, worker_id: str, lease_seconds: float, clock: Callable[[], datetime],
                 held: Callable[[], Sequence[str]], *, queues: Sequence[str] | None = None,
                 concurrency: dict | None = None, tasks_done: Callable[[], int] = lambda: 0) -> None:
        super().__init__()
        self.store = store
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.held = held
        self.queues = queues
        self.concurrency = concurrency or {}
        self.tasks_done = tasks_done
        self.registered = False

    def run_once(self) -> float:
        now = self.clock()
        if not self.registered:
            self.store.register_worker(self.worker_id, queues=self.queues, concurrency=self.concurrency, now=now)
            self.registered = True
        self.store.heartbeat(self.worker_id, self.held(), now + timedelta(seconds=self.lease_seconds))
        self.store.worker_beat(self.worker_id, now, self.tasks_done())
        return self.lease_seconds / 3
