"""ThreadExecutor: up to N daemon threads for blocking work, highest priority first, DB-safe.

Shared by the worker (sync tasks) and ``ThreadBackend`` (tasks after the response). Unlike
``concurrent.futures.ThreadPoolExecutor``:

- a call is handed straight to an idle thread: each idle thread waits on a lock of its own, and
  ``submit`` gives it the call and releases that lock (one wake-up, no shared queue to poll); only
  when every thread is busy does a call wait in the queue, highest ``priority`` first;
- its threads are daemons, so a worker that gave up waiting for a stuck task at shutdown can
  still exit (the task's lease then expires and it is rescued);
- work not yet started can be taken back with ``Future.cancel()``;
- threads start only as work needs them (a worker that never runs a sync task starts none), and
  each runs ``initializer`` first;
- ``wait()`` blocks until everything submitted has finished (tests, draining at exit).

Around each call, Django connections are handled as around a request: closed before if obsolete
or broken, and after.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from django.db import close_old_connections, connections

Work = tuple[Future, Callable[..., Any], tuple[Any, ...]]


class _Idle:
    """A parked thread: it sleeps on ``lock`` until given ``work`` (None: end)."""

    __slots__ = ("lock", "work")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.work: Work | None = None


class ThreadExecutor:
    def __init__(self, size: int, name: str = "loom-thread",
                 initializer: Callable[[], None] | None = None) -> None:
        if size < 1:
            raise ValueError(f"a thread executor needs at least 1 thread, got {size}")
        self.size = size
        self.name = name
        self.initializer = initializer
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)  # everything finished: wait() waits on it
        self._heap: list[tuple[int, int, Future, Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._idle: list[_Idle] = []
        self._unfinished = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: cannot submit after shutdown")
            self._unfinished += 1
            if self._idle:
                parked = self._idle.pop()
                parked.work = (future, fn, args)
                parked.lock.release()
                return future
            heapq.heappush(self._heap, (-priority, next(self._order), future, fn, args))
            if len(self.threads) < self.size:
                self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self.threads)}", daemon=True)
        self.threads.append(thread)
        thread.start()

    @property
    def unfinished(self) -> int:
        """Calls submitted and not finished (queued or running)."""
        with self._lock:
            return self._unfinished

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted call has finished; False if ``timeout`` passed first."""
        with self._lock:
            return self._all_done.wait_for(lambda: self._unfinished == 0, timeout)

    def shutdown(self, wait: float | None = 0) -> bool:
        """Refuse new work; let queued work run and the threads end. With ``wait`` (seconds,
        None for ever), block until what was submitted has finished; False if it had not."""
        with self._lock:
            self._closed = True
            parked, self._idle = self._idle, []
        for idle in parked:
            idle.lock.release()  # with no work: the thread ends
        return self.wait(wait) if wait != 0 else self.unfinished == 0

    def _next(self, parked: _Idle, finished: bool) -> Work | None:
        """Count the call just ``finished``, then the next one: queued, or handed over while parked."""
        with self._lock:
            if finished:
                self._unfinished -= 1
                if self._unfinished == 0:
                    self._all_done.notify_all()
            if self._heap:
                return heapq.heappop(self._heap)[2:]
            if self._closed:
                return None
            parked.work = None
            self._idle.append(parked)
        parked.lock.acquire()
        return parked.work

    def _work(self) -> None:
        try:
            if self.initializer is not None:
                self.initializer()
            finished, parked = False, _Idle()
            while (item := self._next(parked, finished)) is not None:
                future, fn, args = item
                finished = True
                if not future.set_running_or_notify_cancel():
                    continue
                close_old_connections()
                try:
                    result = fn(*args)
                except BaseException as exc:  # handed to the future's owner, KeyboardInterrupt too
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                finally:
                    close_old_connections()
        finally:
            connections.close_all()
