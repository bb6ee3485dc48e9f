"""ThreadExecutor: up to N daemon threads for blocking work, highest priority first, DB-safe.

Shared by the worker (sync tasks) and ``ThreadBackend`` (tasks after the response). Unlike
``concurrent.futures.ThreadPoolExecutor``:

- its threads are daemons, so a worker that gave up waiting for a stuck task at shutdown can
  still exit (the task's lease then expires and it is rescued);
- work not yet started can be taken back with ``Future.cancel()``;
- calls run highest ``priority`` first, then in submission order;
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


class ThreadExecutor:
    def __init__(self, size: int, name: str = "loom-thread",
                 initializer: Callable[[], None] | None = None) -> None:
        if size < 1:
            raise ValueError(f"a thread executor needs at least 1 thread, got {size}")
        self.size = size
        self.name = name
        self.initializer = initializer
        self.threads: list[threading.Thread] = []
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # work to take, or shutting down: idle threads wait on it
        self._all_done = threading.Condition(lock)  # everything finished: wait() waits on it
        self._heap: list[tuple[int, int, Future, Callable, tuple]] = []
        self._order = itertools.count()
        self._idle = 0
        self._unfinished = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name}: cannot submit after shutdown")
            heapq.heappush(self._heap, (-priority, next(self._order), future, fn, args))
            self._unfinished += 1
            self._cond.notify()
            # More queued than threads waiting (some may be notified and not awake yet): one more.
            if len(self._heap) > self._idle and len(self.threads) < self.size:
                self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self.threads)}", daemon=True)
        self.threads.append(thread)
        thread.start()

    @property
    def unfinished(self) -> int:
        """Calls submitted and not finished (queued or running)."""
        with self._cond:
            return self._unfinished

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted call has finished; False if ``timeout`` passed first."""
        with self._cond:
            return self._all_done.wait_for(lambda: self._unfinished == 0, timeout)

    def shutdown(self, wait: float | None = 0) -> bool:
        """Refuse new work; let queued work run and the threads end. With ``wait`` (seconds,
        None for ever), block until what was submitted has finished; False if it had not."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return self.wait(wait) if wait != 0 else self._unfinished == 0

    def _next(self) -> tuple[Future, Callable, tuple] | None:
        with self._cond:
            while not self._heap:
                if self._closed:
                    return None
                self._idle += 1
                self._cond.wait()
                self._idle -= 1
            return heapq.heappop(self._heap)[2:]

    def _done(self) -> None:
        with self._cond:
            self._unfinished -= 1
            if self._unfinished == 0:
                self._all_done.notify_all()

    def _work(self) -> None:
        try:
            if self.initializer is not None:
                self.initializer()
            while (item := self._next()) is not None:
                future, fn, args = item
                try:
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
                    self._done()
        finally:
            connections.close_all()
