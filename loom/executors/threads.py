"""ThreadExecutor: a fixed set of daemon threads for blocking work, with DB-safe task wrappers.

Unlike ``concurrent.futures.ThreadPoolExecutor`` its threads are daemons, so a worker that gave
up waiting for a stuck task at shutdown can still exit (the task's lease then expires and it is
rescued), and work not yet started can be taken back with ``Future.cancel()``. Threads start
with the first submitted call (a worker that never runs a task starts none) and each runs
``initializer`` first. Around each call, Django connections are handled as around a request:
closed if obsolete or broken before, and after.
"""

from __future__ import annotations

import queue
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
        self._queue: queue.SimpleQueue[tuple[Future, Callable, tuple] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def _start(self) -> None:
        with self._start_lock:
            if self._threads:
                return
            self._threads = [threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                             for i in range(self.size)]
            for thread in self._threads:
                thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if not self._threads:
            self._start()
        future: Future = Future()
        self._queue.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        try:
            if self.initializer is not None:
                self.initializer()
            while (item := self._queue.get()) is not None:
                future, fn, args = item
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
