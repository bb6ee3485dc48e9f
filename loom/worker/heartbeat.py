"""Heartbeat: renews the lease on every task this worker runs, every third of the lease.

A worker that stops beating (SIGKILL, OOM, lost machine) lets its leases expire, and the rescuer
puts those tasks back. Configure the lease with OPTIONS["LEASE_SECONDS"].
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from loom.store import Store
from loom.worker.service import Service


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(self, store: Store, worker_id: str, lease_seconds: float, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.store = store
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.on_beat: Callable[[datetime], None] | None = None  # e.g. update the worker's own row

    def run_once(self) -> float:
        now = self.clock()
        self.store.heartbeat(self.worker_id, now + timedelta(seconds=self.lease_seconds))
        if self.on_beat is not None:
            self.on_beat(now)
        return self.lease_seconds / 3
