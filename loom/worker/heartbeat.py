"""Heartbeat: registers the worker, then renews the leases of the tasks it holds, every third of
the lease, and refreshes the worker's own row.

A worker that stops beating (SIGKILL, OOM, lost machine, cut off from the database) lets its
leases expire, and the rescuer puts those tasks back. Only held tasks are renewed (InFlight's
list): a row claimed by this worker that it never learned of keeps its old lease and is rescued.
Registration is the first beat, retried like any other, so a worker never dies at start-up
because the database was briefly unavailable. Configure the lease with OPTIONS["LEASE_SECONDS"].

The beat is also how a worker learns that it lost a claim. A held task the renewal did not find
still claimed by this worker was given to another (its lease expired while this worker was cut
off or stalled): its run is stopped (``InFlight.abandon``). And a worker that could not renew for
a whole lease knows its claims are forfeit before it hears from the database again
(``lapsed_before``; the watchdog stops those runs); once the database answers, the beat ends their
attempts in the worker's own name, where no one else has taken them, so they run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from loom.exceptions import LeaseLost
from loom.service import Service
from loom.store import Store

logger = logging.getLogger("loom.worker")

LEASE_LOST = f"{LeaseLost.__module__}.{LeaseLost.__qualname__}"


class Heartbeat(Service):
    name = "heartbeat"
    max_retry_delay = 2.0

    def __init__(self, store: Store, worker_id: str, lease_seconds: float, clock: Callable[[], datetime],
                 inflight, *, queues: Sequence[str] | None = None, concurrency: dict | None = None,
                 lost_retries: int = 0, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.store = store
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.inflight = inflight
        self.queues = queues
        self.concurrency = concurrency or {}
        self.lost_retries = lost_retries
        self.monotonic = monotonic
        self.registered = False
        # When the last renewal that reached the database began: every held lease runs at
        # least until lease_seconds after it.
        self.renewed_at = monotonic()
        self.taken_over = 0  # runs stopped because another worker was given their task

    def lapsed_before(self) -> float | None:
        """Once no renewal has reached the database for a whole lease: the time.monotonic()
        before which a claim's lease must have begun to have run out (those tasks may have been
        given to another worker by now); None while the leases hold."""
        cutoff = self.monotonic() - self.lease_seconds
        return cutoff if self.renewed_at < cutoff else None

    def run_once(self) -> float:
        now = self.clock()
        began = self.monotonic()
        if not self.registered:
            self.store.register_worker(self.worker_id, queues=self.queues, concurrency=self.concurrency, now=now)
            self.registered = True
        self._give_back()
        held = self.inflight.held_ids()
        kept = self.store.heartbeat(self.worker_id, held, now + timedelta(seconds=self.lease_seconds))
        self.renewed_at = began
        lost = set(held).difference(kept)
        if lost:
            self.taken_over += self.inflight.abandon(sorted(lost), taken_over=True)
        self.store.worker_beat(self.worker_id, now, self.inflight.finished)
        return self.lease_seconds / 3

    def _give_back(self) -> None:
        """End the attempts of runs stopped when the lease ran out (where the claim is still this
        worker's), and return claims that never started."""
        fenced = self.inflight.take_fenced()
        for done, (task_id, attempt) in enumerate(fenced):
            try:
                self.store.rescue(self.clock(), task_ids=[task_id], claimed_by=self.worker_id, attempt=attempt,
                                  extra_attempts=self.lost_retries, error_class=LEASE_LOST,
                                  error_text=f"{LEASE_LOST}: the worker could not renew the task's lease "
                                             f"for {self.lease_seconds:g}s (the database did not answer in time) "
                                             "and stopped the run.\n")
            except BaseException:
                self.inflight.put_back_fenced(fenced[done:])
                raise
            self.inflight.written([task_id])
        release = self.inflight.take_release()
        if release:
            try:
                self.store.release(self.worker_id, release)
            except BaseException:
                self.inflight.put_back_release(release)
                raise
            self.inflight.written(release)
