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
from loom.events.tasks import publish_cancelled
from loom.exceptions import TaskCancelled
from loom.execution import aexecute, cancelled, execute, is_async
from loom.executors.asyncio import AsyncExecutor
from loom.executors.threads import ThreadExecutor
from loom.records import ClaimedTask, Outcome
from loom.worker.completer import Completer
from loom.worker.heartbeat import Heartbeat
from loom.worker.leader import Leader
from loom.worker.watchdog import Watchdog, interrupt_thread

logger = logging.getLogger("loom.worker")

# Sync tasks run at once by default, per worker process.
DEFAULT_THREADS = 8
# async def tasks run at once by default, per worker process.
DEFAULT_ASYNC_LIMIT = 100
# Seconds running tasks get to finish after a stop signal.
DEFAULT_GRACE = 30.0
# Seconds of work (at the current task run time) a worker holds beyond its busy threads.
PREFETCH_HORIZON = 0.02
# Longest the fetch loop sleeps before looking at the signal count.
SIGNAL_POLL = 0.25
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
        worker_id: str | None = None,
        max_tasks: int | None = None,
        max_memory_mb: float | None = None,
        maintenance: bool = True,
        prefetch: int | None = None,
        start_gate: Callable[[], None] | None = None,
    ) -> None:
        self.start_gate = start_gate  # called once, after start-up, before the first claim
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
        # Tasks claimed beyond free threads, waiting in this worker (put back on shutdown). None:
        # adapt to how long tasks take (see _adapt_prefetch); a number: fixed.
        self._fixed_prefetch = prefetch
        self.prefetch = threads if prefetch is None else prefetch
        self._avg_runtime: float | None = None
        self.burst = burst
        self.grace = grace
        self.clock = clock
        self.id = worker_id or make_worker_id()
        self.max_tasks = max_tasks
        self.max_memory_mb = max_memory_mb
        self.recycled = False  # stopped itself for max_tasks / max_memory: the supervisor restarts it

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._fast = threading.Event()
        self._lock = threading.Lock()
        self._sync_running = 0
        self._in_flight: dict[str, Future] = {}
        self._async_ids: set[str] = set()
        self._to_release: list[str] = []
        self._threads_by_task: dict[str, tuple[int, float, float | None]] = {}  # id -> (thread, start, timeout)
        self._interrupted: set[str] = set()
        self._cancelling: set[str] = set()
        self._stopped_accepting = False
        self._signals = 0  # incremented by the signal handler, acted on by the fetch loop
        self._signals_seen = 0
        self.claimed = 0
        self.finished = 0

        self.completer = Completer(
            self.store, self.id, delay=self.config.complete_delay, batch_size=self.config.batch_size,
            on_flush=self.wake,
        )
        self.heartbeat = Heartbeat(self.store, self.id, self.config.lease_seconds, clock)
        self.notifier = notifiers.for_store(self.store, self.wake, self.queues)
        self.watchdog = Watchdog(self, self.store)
        self.leader = Leader(self.store, self.id, self.backend, clock) if maintenance else None
        self._thread_pool: ThreadExecutor | None = None
        self._loop: AsyncExecutor | None = None

    # -- control -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def stop(self, fast: bool = False) -> None:
        """Ask the worker to stop, from another thread (a second call: stop fast)."""
        if self._stop.is_set() or fast:
            self._fast.set()
        self._stop.set()
        self._wake.set()

    def _on_signal(self, signum, frame) -> None:
        # Only count: Event.set() here could deadlock, since the handler may run while the main
        # thread holds that Event's lock inside wait(). The loops poll this count (SIGNAL_POLL).
        self._signals += 1

    def _sleep(self, timeout: float) -> None:
        """Wait until woken or ``timeout``, looking at the signal count every SIGNAL_POLL."""
        deadline = time.monotonic() + timeout
        while not self._wake.is_set() and self._signals == self._signals_seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(min(remaining, SIGNAL_POLL))

    def _take_signals(self) -> None:
        while self._signals_seen < self._signals:
            self._signals_seen += 1
            self.stop()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (or, with burst, until nothing is due)."""
        self._thread_pool = ThreadExecutor(self.threads)
        self._loop = AsyncExecutor(self.async_limit)
        services = [self.completer, self.heartbeat, self.watchdog]
        services += [s for s in (self.notifier, self.leader) if s is not None]
        self.store.register_worker(
            self.id, queues=self.queues, now=self.clock(),
            concurrency={"threads": self.threads, "async": self.async_limit},
        )
        self.heartbeat.on_beat = lambda now: self.store.worker_beat(self.id, now, self.finished)
        for service in services:
            service.start()
        logger.info("loom worker %s started: queues=%s threads=%d", self.id, self.queues, self.threads)
        try:
            if self.start_gate is not None:
                self.start_gate()
            self._fetch_loop()
        finally:
            self._shutdown(services)

    def _room(self) -> int:
        """How many more tasks to claim now: free slots plus a small prefetch, so a claim fetches
        a batch while the running ones finish instead of one task per freed slot."""
        with self._lock:
            sync_room = self.threads + self.prefetch - self._sync_running
            total_room = self.capacity + self.prefetch - len(self._in_flight)
            room = max(0, min(sync_room, total_room))
            starving = self._sync_running < self.threads
        # With work still queued locally, wait until half the prefetch is free: fewer, larger claims.
        return room if starving or room >= max(1, self.prefetch // 2) else 0

    def _fetch_loop(self) -> None:
        idle_delay = MIN_POLL
        errors = 0
        while True:
            self._take_signals()
            if self._stop.is_set():
                return
            self._wake.clear()
            room = self._room()
            if room == 0:
                self._sleep(self.config.poll_interval)  # a finishing task wakes us
                continue
            try:
                claimed = self._claim_once(room)
                errors = 0
            except (DatabaseError, InterfaceError):
                errors += 1
                if self.burst and errors >= MAX_BURST_ERRORS:
                    raise  # a burst run is a one-off: report the broken database, don't wait forever
                logger.exception("loom worker could not claim; retrying")
                _close_connections()
                self._sleep(min(0.1 * 2 ** errors, 5.0))
                continue
            if claimed == min(room, self.config.batch_size):
                idle_delay = MIN_POLL
                continue  # there may be more due right now
            with self._lock:
                busy = bool(self._in_flight) or self.completer.outstanding > 0
            if self.burst and not busy and not claimed:
                return
            if claimed:
                idle_delay = MIN_POLL
                continue
            self._sleep(self._idle_timeout(idle_delay))
            idle_delay = min(idle_delay * 2, self.config.poll_interval)

    def _idle_timeout(self, idle_delay: float) -> float:
        timeout = self.config.poll_interval if self.notifier else idle_delay
        try:
            due = self.store.next_available_at(self.queues)
        except (DatabaseError, InterfaceError):
            _close_connections()
            return timeout
        if due is not None:
            timeout = min(timeout, max((due - self.clock()).total_seconds(), 0.0) + 0.001)
        return timeout

    def _claim_once(self, room: int) -> int:
        now = self.clock()
        records = self.store.claim(
            self.id,
            self.queues,
            min(room, self.config.batch_size),
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
            future = self._thread_pool.submit(self._run_sync, claimed)
            with self._lock:
                self._in_flight[claimed.id] = future
            future.add_done_callback(self._sync_done)
        future.add_done_callback(lambda f, claimed=claimed: self._done(claimed, f))

    def _run_sync(self, claimed: ClaimedTask) -> Outcome:
        with self._lock:
            self._threads_by_task[claimed.id] = (threading.get_ident(), time.monotonic(), claimed.timeout)
        try:
            return execute(claimed)
        finally:
            with self._lock:  # under the lock: the watchdog cannot interrupt a finished run
                _, started, _ = self._threads_by_task.pop(claimed.id)
                self._adapt_prefetch(time.monotonic() - started)

    def _adapt_prefetch(self, runtime: float) -> None:
        """Short tasks: hold enough claimed work to cover a claim round trip (up to a batch), so
        the threads never wait on the database. Long tasks: hold little, so other workers get
        the rest. Called under the lock."""
        avg = runtime if self._avg_runtime is None else 0.9 * self._avg_runtime + 0.1 * runtime
        self._avg_runtime = avg
        if self._fixed_prefetch is None:
            wanted = int(self.threads * PREFETCH_HORIZON / max(avg, 1e-4))
            self.prefetch = max(1, min(self.config.batch_size, wanted))

    # -- watchdog hooks --------------------------------------------------------------------

    def overdue_sync_tasks(self, now: float) -> list[str]:
        with self._lock:
            return [task_id for task_id, (_, start, timeout) in self._threads_by_task.items()
                    if timeout is not None and now - start > timeout and task_id not in self._interrupted]

    def interrupt(self, task_id: str, exc_type: type[BaseException]) -> None:
        with self._lock:
            entry = self._threads_by_task.get(task_id)
            if entry is not None and task_id not in self._interrupted:
                self._interrupted.add(task_id)
                interrupt_thread(entry[0], exc_type)

    def cancel_running(self, task_id: str) -> None:
        """Stop a run an operator cancelled; _done() records it as CANCELLED."""
        with self._lock:
            future = self._in_flight.get(task_id)
            if future is None or task_id in self._cancelling:
                return
            self._cancelling.add(task_id)
            is_coroutine = task_id in self._async_ids
        if is_coroutine or future.cancel():
            if is_coroutine:
                future.cancel()
            return
        self.interrupt(task_id, TaskCancelled)

    def _sync_done(self, future: Future) -> None:
        with self._lock:
            self._sync_running -= 1

    def _done(self, claimed: ClaimedTask, future: Future) -> None:
        outcome: Outcome | None = None
        with self._lock:
            was_cancelled = claimed.id in self._cancelling
            self._cancelling.discard(claimed.id)
            self._interrupted.discard(claimed.id)
        if was_cancelled and (future.cancelled() or future.exception() is not None
                              or future.result().status != "SUCCESSFUL"):
            outcome = cancelled(claimed)
            publish_cancelled([claimed])
        elif not future.cancelled():
            exc = future.exception()
            if exc is None:
                outcome = future.result()
            elif isinstance(exc, KeyboardInterrupt):
                self.stop()  # a task asked the process to stop: do so, and put the task back
            else:
                logger.error("loom worker: internal error running %s", claimed.id, exc_info=exc)
        with self._lock:
            if self._stopped_accepting:
                return  # already rescued at shutdown; the completer is gone
            if outcome is not None:
                # Hand the outcome over before the task leaves _in_flight, so no one (a --burst
                # loop deciding it is done) sees it neither in flight nor waiting to be written.
                self.completer.put(outcome)
                self.finished += 1
            else:
                self._to_release.append(claimed.id)
            self._in_flight.pop(claimed.id, None)
            self._async_ids.discard(claimed.id)
        if outcome is not None:
            self._maybe_recycle()
        self._wake.set()

    def _maybe_recycle(self) -> None:
        """Stop (gracefully) after max_tasks or above max_memory; the supervisor starts a fresh child."""
        if self.recycled:
            return
        if (self.max_tasks is not None and self.finished >= self.max_tasks) or (
            self.max_memory_mb is not None and rss_mb() > self.max_memory_mb
        ):
            self.recycled = True
            self.stop()

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
            self._take_signals()  # a second signal: stop waiting
        with self._lock:
            abandoned = list(self._in_flight)
            self._stopped_accepting = True
        self._release_unstarted()
        self.completer.stop()  # flushes what finished, so only unfinished runs are rescued below
        if abandoned:
            self._rescue_abandoned(abandoned)
        try:
            self.store.worker_stopped(self.id, self.clock(), self.finished)
        except (DatabaseError, InterfaceError):
            pass
        for service in services:
            if service is not self.completer:
                service.stop()
        if self._thread_pool:
            self._thread_pool.shutdown()
        if self._loop:
            self._loop.shutdown()
        _close_connections()

    def _rescue_abandoned(self, ids: list[str]) -> None:
        """Tasks still running when the worker gives up waiting: end their attempt now (they may
        have had effects) so they run again at once instead of after their lease expires."""
        from loom.exceptions import WorkerLost

        logger.warning("loom worker %s stopped with %d tasks still running; they will run again",
                       self.id, len(ids))
        try:
            self.store.rescue(self.clock(), task_ids=ids, extra_attempts=self.config.lost_retries,
                              error_class=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}",
                              error_text="loom.exceptions.WorkerLost: the worker stopped before the "
                                         "task finished (grace period over, or a second stop signal).\n")
        except (DatabaseError, InterfaceError):
            logger.exception("loom worker could not rescue them now; their leases will expire")

    def _release_unstarted(self) -> None:
        with self._lock:
            ids, self._to_release = self._to_release, []
        if ids:
            try:
                self.store.release(self.id, ids)
            except (DatabaseError, InterfaceError):
                logger.exception("loom worker could not return %d unstarted tasks; they will be "
                                 "rescued when their leases expire", len(ids))


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _close_connections() -> None:
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:
            conn.connection = None
