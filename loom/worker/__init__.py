"""Worker: claims due tasks in batches, runs them, and writes their outcomes in batches.

One process, several threads::

    main thread   fetch loop: claim min(free slots, batch) -> dispatch -> sleep until woken
    threads       ThreadExecutor(N): sync tasks, one per thread
    event loop    AsyncExecutor: async def tasks, many at once
    completer     batches outcomes into one UPDATE
    heartbeat     renews leases of running tasks
    notifier      LISTEN (PostgreSQL) / data_version (SQLite): wakes the fetch loop

Shutdown (SIGTERM/SIGINT, or ``stop()``): stop claiming; take back tasks claimed but not started
and return them to READY; let running tasks finish within ``grace`` seconds; flush outcomes. A
second signal skips the grace period. Tasks still running after it keep their lease and are
rescued when it expires. Signal handlers only set flags; the fetch loop does the work.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta

from django.db import DatabaseError, InterfaceError, connections
from django.tasks import task_backends
from django.utils import timezone
from django.utils.crypto import get_random_string

from loom import notifier as notifiers
from loom.execution import aexecute, execute, is_async
from loom.executors.asyncio import AsyncExecutor
from loom.executors.threads import ThreadExecutor
from loom.records import ClaimedTask, Outcome
from loom.worker.completer import Completer
from loom.worker.heartbeat import Heartbeat

logger = logging.getLogger("loom.worker")

# Sync tasks run at once by default, per worker process.
DEFAULT_THREADS = 8
# async def tasks run at once by default, per worker process.
DEFAULT_ASYNC_LIMIT = 100
# Seconds running tasks get to finish after a stop signal.
DEFAULT_GRACE = 30.0
# Consecutive claim errors after which a --burst run gives up.
MAX_BURST_ERRORS = 5
# Fastest idle poll for databases without a wake-up signal (MariaDB/MySQL), in seconds.
MIN_POLL = 0.01


def make_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{get_random_string(6)}"


class Worker:
    def __init__(
        self,
        *,
        backend: str = "default",
        queues: Sequence[str] | None = None,
        threads: int = DEFAULT_THREADS,
        async_limit: int = DEFAULT_ASYNC_LIMIT,
        burst: bool = False,
        grace: float = DEFAULT_GRACE,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        from loom.backends.database import DatabaseBackend

        self.backend = task_backends[backend]
        if not isinstance(self.backend, DatabaseBackend):
            raise TypeError(
                f"TASKS[{backend!r}] uses {type(self.backend).__name__}; loom worker runs tasks "
                "of loom.backends.DatabaseBackend only."
            )
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        unknown = set(queues or ()) - self.backend.queues if self.backend.queues else set()
        if unknown:
            raise ValueError(
                f"Queue(s) {', '.join(sorted(unknown))} not in TASKS[{backend!r}]['QUEUES'] "
                f"({', '.join(sorted(self.backend.queues))})."
            )
        self.queues = sorted(queues) if queues else sorted(self.backend.queues) or None
        self.config = self.backend.config
        self.store = self.backend.store
        self.threads = threads
        self.async_limit = async_limit
        self.capacity = threads + async_limit
        self.burst = burst
        self.grace = grace
        self.clock = clock
        self.id = make_worker_id()

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._fast = threading.Event()
        self._lock = threading.Lock()
        self._sync_running = 0
        self._in_flight: dict[str, Future] = {}
        self._async_ids: set[str] = set()
        self._to_release: list[str] = []
        self.claimed = 0
        self.finished = 0

        self.completer = Completer(
            self.store, self.id, delay=self.config.complete_delay, batch_size=self.config.batch_size,
            on_flush=self.wake,
        )
        self.heartbeat = Heartbeat(self.store, self.id, self.config.lease_seconds, clock)
        self.notifier = notifiers.for_store(self.store, self.wake, self.queues)
        self._thread_pool: ThreadExecutor | None = None
        self._loop: AsyncExecutor | None = None

    # -- control -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def stop(self, fast: bool = False) -> None:
        """Ask the worker to stop; safe from signal handlers and other threads (only sets flags)."""
        if self._stop.is_set() or fast:
            self._fast.set()
        self._stop.set()
        self._wake.set()

    def _on_signal(self, signum, frame) -> None:
        self.stop()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (or, with burst, until nothing is due)."""
        self._thread_pool = ThreadExecutor(self.threads)
        self._loop = AsyncExecutor(self.async_limit)
        services = [self.completer, self.heartbeat] + ([self.notifier] if self.notifier else [])
        for service in services:
            service.start()
        logger.info("loom worker %s started: queues=%s threads=%d", self.id, self.queues, self.threads)
        try:
            self._fetch_loop()
        finally:
            self._shutdown(services)

    def _free_slots(self) -> int:
        with self._lock:
            sync_free = self.threads - self._sync_running
            return min(self.capacity - len(self._in_flight), max(sync_free, 0))

    def _fetch_loop(self) -> None:
        idle_delay = MIN_POLL
        errors = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                claimed = self._claim_once()
                errors = 0
            except (DatabaseError, InterfaceError):
                errors += 1
                if self.burst and errors >= MAX_BURST_ERRORS:
                    raise  # a burst run is a one-off: report the broken database, don't wait forever
                logger.exception("loom worker could not claim; retrying")
                _close_connections()
                self._wake.wait(min(0.1 * 2 ** errors, 5.0))
                continue
            if claimed:
                idle_delay = MIN_POLL
                continue
            with self._lock:
                busy = bool(self._in_flight) or self.completer.outstanding > 0
            if self.burst and not busy and self._free_slots() > 0:
                return
            self._wake.wait(self._idle_timeout(idle_delay))
            idle_delay = min(idle_delay * 2, self.config.poll_interval)

    def _idle_timeout(self, idle_delay: float) -> float:
        timeout = self.config.poll_interval if self.notifier else idle_delay
        if self._free_slots() > 0:
            try:
                due = self.store.next_available_at(self.queues)
            except (DatabaseError, InterfaceError):
                _close_connections()
                return timeout
            if due is not None:
                timeout = min(timeout, max((due - self.clock()).total_seconds(), 0.0) + 0.001)
        return timeout

    def _claim_once(self) -> int:
        free = self._free_slots()
        if free <= 0:
            return 0
        now = self.clock()
        records = self.store.claim(
            self.id,
            self.queues,
            min(free, self.config.batch_size),
            now,
            now + timedelta(seconds=self.config.lease_seconds),
        )
        for record in records:
            self._dispatch(ClaimedTask.from_record(record))
        self.claimed += len(records)
        return len(records)

    def _dispatch(self, claimed: ClaimedTask) -> None:
        if is_async(claimed):
            future = self._loop.submit(aexecute, claimed)
            with self._lock:
                self._in_flight[claimed.id] = future
                self._async_ids.add(claimed.id)
        else:
            with self._lock:
                self._sync_running += 1
            future = self._thread_pool.submit(execute, claimed)
            with self._lock:
                self._in_flight[claimed.id] = future
            future.add_done_callback(self._sync_done)
        future.add_done_callback(lambda f, claimed=claimed: self._done(claimed, f))

    def _sync_done(self, future: Future) -> None:
        with self._lock:
            self._sync_running -= 1

    def _done(self, claimed: ClaimedTask, future: Future) -> None:
        outcome: Outcome | None = None
        if not future.cancelled():
            exc = future.exception()
            if exc is None:
                outcome = future.result()
            elif isinstance(exc, KeyboardInterrupt):
                self.stop()  # a task asked the process to stop: do so, and put the task back
            else:
                logger.error("loom worker: internal error running %s", claimed.id, exc_info=exc)
        with self._lock:
            self._in_flight.pop(claimed.id, None)
            self._async_ids.discard(claimed.id)
            if outcome is None:
                self._to_release.append(claimed.id)
            else:
                self.finished += 1
        if outcome is not None:
            self.completer.put(outcome)
        self._wake.set()

    # -- shutdown ------------------------------------------------------------------------------

    def _shutdown(self, services) -> None:
        with self._lock:
            pending = [f for i, f in self._in_flight.items() if i not in self._async_ids]
        for future in pending:
            future.cancel()  # succeeds only for sync tasks not started yet; _done() releases them
        deadline = time.monotonic() + (0 if self._fast.is_set() else self.grace)
        while time.monotonic() < deadline and not self._fast.is_set():
            with self._lock:
                if not self._in_flight:
                    break
            self._wake.wait(0.05)
            self._wake.clear()
        with self._lock:
            running_coroutines = [f for i, f in self._in_flight.items() if i in self._async_ids]
        for future in running_coroutines:
            future.cancel()  # past the grace period: interrupt coroutines and put their tasks back
        self._release_unstarted()
        self.completer.stop()
        for service in services:
            if service is not self.completer:
                service.stop()
        if self._thread_pool:
            self._thread_pool.shutdown()
        if self._loop:
            self._loop.shutdown()
        with self._lock:
            left = len(self._in_flight)
        if left:
            logger.warning("loom worker %s stopped with %d tasks still running; their leases will "
                           "expire and they will run again", self.id, left)
        _close_connections()

    def _release_unstarted(self) -> None:
        with self._lock:
            ids, self._to_release = self._to_release, []
        if ids:
            try:
                self.store.release(self.id, ids)
            except (DatabaseError, InterfaceError):
                logger.exception("loom worker could not return %d unstarted tasks; they will be "
                                 "rescued when their leases expire", len(ids))


def _close_connections() -> None:
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:
            conn.connection = None
