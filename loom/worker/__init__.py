"""Worker: builds the parts of one worker process and runs its start and stop.

One process, several threads, each part a service with one job::

    fetcher     claims min(room, batch) due tasks in one statement; sleeps until woken: it
                waits on the listener itself (LISTEN on PostgreSQL, inotify on SQLite)
    InFlight    dispatches them (threads for sync tasks, an event loop for coroutines), hands
                each outcome to the completer, carries out cancels and interrupts
    completer   writes outcomes in batches (one UPDATE); a bad outcome fails its task alone
    heartbeat   registers the worker, renews the leases of the tasks it holds; stops the runs
                of tasks another worker was given (a claim lost while cut off)
    watchdog    soft time limits of sync tasks; stops the runs whose leases ran out while the
                heartbeat could not renew them (never waits on the database)
    cancels     reads operators' cancel requests for the tasks running here
    leader      if elected cluster-wide: rescuer, scheduler, pruner

None of them dies of a database error: each retries with backoff and logs once per outage.

Stopping (``stop()``, or a signal): stop claiming; take back tasks claimed but not started and
return them to READY; let running tasks finish within ``grace`` seconds; flush outcomes. Tasks
still running after that end their attempt (``WorkerLost``) and run again at once. Signal
handlers only count; the main thread acts on the counts (see ``install_signal_handlers``).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import DatabaseError, InterfaceError, connections
from django.utils import timezone
from django.utils.crypto import get_random_string

from loom.compat import task_backends
from loom.exceptions import WorkerLost
from loom.executors.asyncio import AsyncExecutor
from loom.executors.threads import ThreadExecutor
from loom.pooler import listener_for
from loom.worker.atomic import run_atomic
from loom.worker.completer import Completer
from loom.worker.fetcher import Fetcher
from loom.worker.heartbeat import Heartbeat
from loom.worker.inflight import InFlight
from loom.worker.leader import Leader
from loom.worker.cancels import Cancels
from loom.worker.watchdog import Watchdog

logger = logging.getLogger("loom.worker")

# Sync tasks run at once by default, per worker process.
DEFAULT_THREADS = 8
# async def tasks run at once by default, per worker process.
DEFAULT_ASYNC_LIMIT = 100
# Seconds running tasks get to finish after a stop signal.
DEFAULT_GRACE = 30.0
# Longest the main thread waits before looking at the signal counts.
SIGNAL_POLL = 0.25
# Seconds a --burst run waits for an unavailable database before it gives up.
BURST_OUTAGE_LIMIT = 10.0
# Seconds to wait for the fetcher's current claim when stopping.
FETCHER_JOIN = 10.0


class WorkerFailed(RuntimeError):
    """A --burst run gave up (the database stayed unavailable)."""


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
        self.burst = burst
        self.grace = grace
        self.clock = clock
        self.id = worker_id or make_worker_id()
        self.max_tasks = max_tasks
        self.max_memory_mb = max_memory_mb
        self.start_gate = start_gate  # called once, after start-up, before the first claim
        self.recycled = False  # stopped itself for max_tasks / max_memory: the supervisor restarts it

        self._stop = threading.Event()
        self._fast = threading.Event()
        self._main_wake = threading.Event()
        # Signal counts (handlers only count; the main thread acts): escalating (a second one
        # means "stop now"), graceful only (never escalates), and "stop now".
        self._stop_signals = self._stop_signals_seen = 0
        self._graceful_signals = 0
        self._fast_signals = 0

        self.executor = ThreadExecutor(threads, name="loom-task", initializer=_label_task_thread)
        self.loop = AsyncExecutor(async_limit)
        self.completer = Completer(self.store, self.id, delay=self.config.complete_delay,
                                   batch_size=self.config.batch_size, on_written=self._written)
        self.inflight = InFlight(executor=self.executor, loop=self.loop, async_limit=async_limit,
                                 batch_size=self.config.batch_size, prefetch=prefetch,
                                 hand_off=self.completer.put, on_done=self._task_done,
                                 run_atomic=functools.partial(run_atomic, worker_id=self.id))
        self.fetcher = Fetcher(self.store, self.id, self.queues, self.config, self.inflight, clock,
                               listener=listener_for(self.store, self.queues, self.config), burst=burst,
                               backend=backend)
        self.heartbeat = Heartbeat(self.store, self.id, self.config.lease_seconds, clock, self.inflight,
                                   queues=self.queues, concurrency={"threads": threads, "async": async_limit},
                                   lost_retries=self.config.lost_retries)
        self.watchdog = Watchdog(self.inflight, lapsed_before=self.heartbeat.lapsed_before)
        self.cancels = Cancels(self.inflight, self.id, self.store,
                               database_away=lambda: self.heartbeat.failing_since is not None)
        self.leader = Leader(self.store, self.id, self.backend, clock) if maintenance else None

    @property
    def finished(self) -> int:
        return self.inflight.finished

    @property
    def claimed(self) -> int:
        return self.fetcher.claimed

    # -- control -------------------------------------------------------------------------------

    def stop(self, fast: bool = False) -> None:
        """Ask the worker to stop, from another thread (a second call: stop fast)."""
        if self._stop.is_set() or fast:
            self._fast.set()
        self._stop.set()
        self._main_wake.set()

    def install_signal_handlers(self, *, child: bool = False) -> None:
        """A worker on its own: SIGTERM or SIGINT stops gracefully, a second one stops fast.
        A supervisor's child: SIGTERM only ever means graceful (systemd and a terminal's Ctrl-C
        also reach the children, besides the supervisor's own forward: they must not add up to
        a fast stop), SIGINT is ignored (the supervisor hears Ctrl-C), and SIGUSR1, sent by the
        supervisor on a second deliberate signal, stops fast."""
        if child:
            signal.signal(signal.SIGTERM, self._on_graceful_signal)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, self._on_fast_signal)
        else:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_stop_signal)

    # Handlers only count, and tell the fetcher to claim nothing more (a plain attribute): an
    # Event.set() here could deadlock, since the handler may run while the main thread holds that
    # Event's lock inside wait(). The main thread polls (SIGNAL_POLL) and stops the rest; until
    # then a fetcher woken by another worker's rescue claimed tasks it would only abandon.
    def _on_stop_signal(self, signum, frame) -> None:
        self._stop_signals += 1
        self.fetcher.halted = True

    def _on_graceful_signal(self, signum, frame) -> None:
        self._graceful_signals += 1
        self.fetcher.halted = True

    def _on_fast_signal(self, signum, frame) -> None:
        self._fast_signals += 1
        self.fetcher.halted = True

    def _take_signals(self) -> bool:
        """Act on the signals counted so far; True once the worker should stop fast."""
        if self._fast_signals:
            self.stop(fast=True)
        elif self._graceful_signals and not self._stop.is_set():
            self.stop()
        while self._stop_signals_seen < self._stop_signals:
            self._stop_signals_seen += 1
            self.stop()
        if self.inflight.stop_requested and not self._stop.is_set():
            self.stop()  # a task raised KeyboardInterrupt
        return self._fast.is_set()

    def _task_done(self) -> None:
        if self.fetcher.starved and self.inflight.room():
            self.fetcher.wake()
        if self.max_tasks is not None or self.max_memory_mb is not None:
            self._maybe_recycle()

    def _written(self, ids: Sequence[str]) -> None:
        self.inflight.written(ids)
        self.fetcher.wake()  # a retry may be due now; a burst run may be done

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (or, with burst, until nothing is due)."""
        services = [self.completer, self.heartbeat, self.watchdog, self.cancels]
        services += [s for s in (self.leader,) if s is not None]
        for service in services:
            service.start()
        logger.info("loom worker %s started: queues=%s threads=%d", self.id, self.queues, self.threads)
        try:
            if self.start_gate is not None:
                self.start_gate()
            self.fetcher.start()
            self._wait_for_stop()
        finally:
            self._shutdown(services)

    def _wait_for_stop(self) -> None:
        while not self._take_signals() and not self._stop.is_set():
            if self.burst:
                if self.fetcher.drained.is_set():
                    return
                since = self.fetcher.failing_since
                if since is not None and time.monotonic() - since > BURST_OUTAGE_LIMIT:
                    raise WorkerFailed(f"the database stayed unavailable for {BURST_OUTAGE_LIMIT:g}s; "
                                       "this --burst run gives up")
            self._main_wake.wait(SIGNAL_POLL)
            self._main_wake.clear()

    def _maybe_recycle(self) -> None:
        """Stop (gracefully) after max_tasks or above max_memory; the supervisor starts a fresh child."""
        if self.recycled:
            return
        if (self.max_tasks is not None and self.finished >= self.max_tasks) or (
            self.max_memory_mb is not None and rss_mb() > self.max_memory_mb
        ):
            self.recycled = True
            self.inflight.drain()
            self.stop()

    # -- shutdown ------------------------------------------------------------------------------

    def _shutdown(self, services) -> None:
        self.fetcher.stop(FETCHER_JOIN)
        self.inflight.take_back_unstarted()
        deadline = time.monotonic() + (0 if self._fast.is_set() else self.grace)
        self.inflight.wait_finished(deadline, give_up=self._take_signals)
        abandoned, unstarted = self.inflight.close()
        self._release(unstarted)
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
        self.executor.shutdown()
        self.loop.shutdown()
        self.fetcher.close()
        _close_connections()

    def _rescue_abandoned(self, ids: list[str]) -> None:
        """Tasks still running when the worker gives up waiting: end their attempt now (they may
        have had effects) so they run again at once instead of after their lease expires."""
        logger.warning("loom worker %s stopped with %d tasks still running; they will run again",
                       self.id, len(ids))
        try:
            self.store.rescue(self.clock(), task_ids=ids, claimed_by=self.id, extra_attempts=self.config.lost_retries,
                              error_class=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}",
                              error_text="loom.exceptions.WorkerLost: the worker stopped before the "
                                         "task finished (grace period over, or a second stop signal).\n")
        except (DatabaseError, InterfaceError):
            logger.warning("loom worker could not rescue them now; their leases will expire")

    def _release(self, ids: list[str]) -> None:
        if not ids:
            return
        try:
            self.store.release(self.id, ids)
        except (DatabaseError, InterfaceError):
            logger.warning("loom worker could not return %d unstarted tasks; they will be "
                           "rescued when their leases expire", len(ids))


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _label_task_thread() -> None:
    from loom.databases import label_thread

    label_thread("task")


def _close_connections() -> None:
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:
            conn.connection = None
