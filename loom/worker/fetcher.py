"""Fetcher: claims due tasks in batches and hands them to InFlight; sleeps until woken.

``run_once()`` claims ``min(room, BATCH_SIZE)`` rows in one statement (room: free slots plus
prefetch, from InFlight) and dispatches them; after a claim that came back short it first lets
those tasks reach their threads (``SETTLE``). It runs again at once while claims come back, and
otherwise waits until something may have changed: a notification (the worker's listener, see
``loom.notifier``: the fetcher ``select``s on its descriptor itself, so a NOTIFY reaches the claim
without a hand-off between threads), a finishing task or a written outcome (``wake()``, a byte on
a pipe), the next deferred task's time, or ``POLL_INTERVAL``. Without a listener (MariaDB, a
pooler without LISTEN_DATABASE) it polls from ``MIN_POLL`` up. With ``burst`` it sets ``drained``
once nothing is due, nothing is held, and no retry it scheduled is due within
``BURST_RETRY_HORIZON`` (later ones stay READY for the next run).

A claim that raised may still have committed (the connection dropped after the statement ran):
before the next claim the fetcher releases every row claimed by this worker that InFlight does
not hold, so such rows run at once instead of waiting for their lease to expire. A listener that
fails is reopened before the next claim. Refuses: running tasks, writing outcomes.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from loom.conf import Options
from loom.service import Service
from loom.store import Store
from loom.store.flow import FlowSnapshot
from loom.worker.inflight import InFlight

# Fastest idle poll for databases without a wake-up signal (MariaDB/MySQL), in seconds.
MIN_POLL = 0.01
# A --burst run also waits for the retries it scheduled that are due within this many seconds.
BURST_RETRY_HORIZON = 10.0
# Seconds between two reads of the queues' state (pause, limits): a pause stops claims within it.
FLOW_REFRESH = 0.5
# Longest wait, in seconds, while due tasks wait only for a limit to free up (or a resume).
FLOW_POLL = 0.1
# After a claim that came back short (the queue is empty now), seconds to let the claimed tasks
# reach their threads before the next claim takes the GIL (InFlight.dispatch's ``settle``).
SETTLE = 0.002


class Fetcher(Service):
    name = "fetcher"
    max_retry_delay = 2.0

    def __init__(self, store: Store, worker_id: str, queues: Sequence[str] | None, config: Options,
                 inflight: InFlight, clock: Callable[[], datetime], *, listener: Any = None,
                 burst: bool = False, backend: str = "default") -> None:
        super().__init__()
        self.store = store
        self.backend = backend
        self.flow = FlowSnapshot()
        self._flow_due = 0.0
        self.worker_id = worker_id
        self.queues = queues
        self.config = config
        self.inflight = inflight
        self.clock = clock
        self.listener = listener
        self.burst = burst
        self.drained = threading.Event()
        self.claimed = 0
        self.last_tick = time.monotonic()  # for health checks: the loop is alive
        self._orphans_possible = False
        # Set by the worker's signal handlers: a stop is on its way, claim nothing more.
        self.halted = False
        self._idle_delay = MIN_POLL
        self._listening = False
        # Set while the fetcher waits for a free slot: only then does a finishing task wake it.
        self.starved = False
        self._pipe_r, self._pipe_w = os.pipe()
        os.set_blocking(self._pipe_r, False)
        os.set_blocking(self._pipe_w, False)

    # -- waking ------------------------------------------------------------------------------

    def wake(self) -> None:
        try:
            os.write(self._pipe_w, b".")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending already) or closed at shutdown

    def sleep(self, delay: float | None) -> None:
        """Until woken, notified, or ``delay`` passes; a polled listener is looked at meanwhile."""
        deadline = None if delay is None else time.monotonic() + delay
        listener = self.listener if self._listening else None
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            fds = [self._pipe_r]
            fd = listener.fileno() if listener is not None else None
            if fd is not None:
                fds.append(fd)
            elif listener is not None and listener.interval is not None:
                remaining = listener.interval if remaining is None else min(remaining, listener.interval)
            try:
                readable, _, _ = select.select(fds, [], [], remaining)
            except (OSError, ValueError):
                self._listening = False  # the listener's connection went away: reopen it
                return
            if self._pipe_r in readable:
                self._empty_pipe()
                return
            if listener is not None and (fd is None or fd in readable):
                try:
                    if listener.drain():
                        return
                except Exception:
                    self._listening = False
                    return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def _empty_pipe(self) -> None:
        try:
            while os.read(self._pipe_r, 4096):
                pass
        except BlockingIOError:
            pass

    # -- claiming ----------------------------------------------------------------------------

    def run_once(self) -> float | None:
        self.last_tick = time.monotonic()
        if self.drained.is_set() or self.halted:
            return None  # a drained --burst run, or a stop signal: the worker is stopping
        if self.listener is not None and not self._listening:
            self.listener.open()  # raises while the database is away: the service backs off
            self._listening = True  # and then claims: what was sent meanwhile was missed
        self.starved = True  # before looking: a task finishing meanwhile then wakes us
        room = self.inflight.room()
        if room == 0:
            return self.config.poll_interval  # a finishing task wakes us sooner
        self.starved = False
        if self._orphans_possible:
            self.store.release_orphans(self.worker_id, self.inflight.held_ids())
            self._orphans_possible = False
        # A --burst run is drained only if nothing was held before this claim's clock was read:
        # an outcome written meanwhile may have enqueued more (a workflow's next step).
        idle_before = self.inflight.idle()
        leased_at = time.monotonic()  # no later than the lease's own start: now, read next
        now = self.clock()
        if time.monotonic() >= self._flow_due:
            self.flow = self.store.flow_snapshot(self.backend, self.queues, self.config.queue_limits)
            self._flow_due = time.monotonic() + FLOW_REFRESH
        self._orphans_possible = True  # until the claims' rows are in InFlight's hands
        limit = min(room, self.config.batch_size)
        claimed = self._claim(limit, now, now + timedelta(seconds=self.config.lease_seconds))
        if claimed and time.monotonic() - leased_at > self.config.lease_seconds / 3:
            claimed, leased_at = self._renew_slow_claim(claimed)
        self.inflight.dispatch(claimed, leased_at=leased_at, settle=SETTLE if len(claimed) < limit else 0.0)
        self._orphans_possible = False
        self.claimed += len(claimed)
        if claimed:
            self._idle_delay = MIN_POLL
            return 0  # there may be more due right now
        if self.burst and idle_before and self.inflight.idle() and not self._retry_soon(now) \
                and not self._throttled(now):
            self.drained.set()
            return None
        timeout = self._idle_timeout()
        self._idle_delay = min(self._idle_delay * 2, self.config.poll_interval)
        return timeout

    def _renew_slow_claim(self, claimed: list) -> tuple[list, float]:
        """A claim that took longer than a heartbeat interval (a reconnect or a retransmission
        across a network outage) may have run at any moment of the wait, so its lease can only be
        counted from before it: after an outage whose heartbeat has not caught up yet, the watchdog
        would stop these fresh runs at once, and they would run a second time elsewhere. Renewing
        them on this connection, which just answered, counts their lease from now instead."""
        leased_at = time.monotonic()
        lease_until = self.clock() + timedelta(seconds=self.config.lease_seconds)
        kept = set(self.store.heartbeat(self.worker_id, [task.id for task in claimed], lease_until))
        return [task for task in claimed if task.id in kept], leased_at

    def _claim(self, limit: int, now: datetime, lease_until: datetime) -> list:
        """The plain claim for plain queues; the flow claim (loom.store.flow) for tasks under
        flow control and limited queues, given half the room when both may have work, so that
        neither starves the other. Paused queues are left out of both."""
        flow = self.flow
        held_back = flow.paused | set(flow.limits)
        plain = [q for q in self.queues if q not in held_back] if self.queues else None
        claimed: list = []
        if flow.limits or flow.flow_waiting:
            share = limit if self.queues and not plain else max(1, limit // 2)
            claimed = self.store.claim_flow(self.worker_id, self.backend, self.queues, flow.limits, share, now,
                                            lease_until, exclude=flow.paused, keyed=flow.flow_waiting)
        if (plain is None or plain) and len(claimed) < limit:
            claimed += self.store.claim(self.worker_id, plain, limit - len(claimed), now, lease_until,
                                        exclude=held_back if plain is None else ())
        return claimed

    def _throttled(self, now: datetime) -> bool:
        """Due tasks wait only for a limit to free up (a --burst run waits for them too)."""
        if not (self.flow.limits or self.flow.flow_waiting):
            return False
        queues = [q for q in self.queues if q not in self.flow.paused] if self.queues else None
        if queues == []:
            return False
        due = self.store.next_available_at(queues, exclude=self.flow.paused if queues is None else ())
        return due is not None and due <= now

    def _retry_soon(self, now: datetime) -> bool:
        retry_at = self.inflight.retry_at
        return retry_at is not None and now < retry_at <= now + timedelta(seconds=BURST_RETRY_HORIZON)

    def _idle_timeout(self) -> float:
        timeout = self.config.poll_interval if self.listener is not None else self._idle_delay
        if self.flow.limits or self.flow.flow_waiting:
            timeout = min(timeout, FLOW_REFRESH)  # limits free up without a notification
        due = self.store.next_available_at(self.queues)
        if due is not None:
            wait = (due - self.clock()).total_seconds()
            if wait <= 0 and (self.flow.limits or self.flow.flow_waiting or self.flow.paused):
                # Due tasks this claim left alone wait for a slot, a rate window or a resume: our
                # own finishing tasks wake us (``_written``); another host's, within FLOW_POLL.
                timeout = min(timeout, FLOW_POLL)
            else:
                timeout = min(timeout, max(wait, 0.0) + 0.001)
        return timeout

    def on_stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self._listening = False

    def close(self) -> None:
        """Release the wake-up pipe (after the service stopped)."""
        for fd in (self._pipe_r, self._pipe_w):
            try:
                os.close(fd)
            except OSError:
                pass
