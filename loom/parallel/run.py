"""Run: one ``parallel.map``/``gather``/``as_completed`` call from the calling thread's side.

``Run`` keeps the bookkeeping every mode shares: results by input position, the first error, the
deadline. Its two sync forms differ only in where calls execute:

* ``ThreadRun`` feeds calls to the shared pool (``loom.parallel.pool``), never more than
  ``limit`` of them queued or running at once, so one big ``map`` cannot fill the pool's queue
  ahead of other requests. The next call is submitted from the finishing call's callback, so the
  caller only wakes to collect results.
* ``SerialRun`` calls them one after another in the calling thread: inline mode, and nested calls
  made from inside the pool (waiting there for pool threads could deadlock).

The rules are the same for both. On the first error no new call starts, calls not yet started
are cancelled, calls already running are waited for (until the deadline, if any), then the error
is raised with its own traceback and a note naming the call. On timeout not-started calls are
cancelled and ``ParallelTimeout`` is raised at once; calls already running in a thread cannot be
interrupted, so they finish in the background, their results are dropped, and their connections
are closed as usual.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from loom.parallel.calls import Call, ParallelTimeout
from loom.parallel.context import RequestState, run_call
from loom.parallel.pool import get_pool


class Run:
    def __init__(self, label: str, calls: list[Call], timeout: float | None, return_exceptions: bool) -> None:
        self.label = label
        self.calls = calls
        self.timeout = timeout
        self.return_exceptions = return_exceptions
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.results: dict[int, Any] = {}
        self.error: tuple[int, BaseException] | None = None

    # -- shared by every mode --------------------------------------------------------------

    def take(self, position: int, value: Any, exc: BaseException | None) -> bool:
        """Record one outcome; return False if it is the first error (the caller stops the rest)."""
        if exc is None or self.return_exceptions:
            self.results[position] = value if exc is None else exc
            return True
        if self.error is None:
            self.error = (position, exc)
            return False
        return True  # a later error while the running calls finish: the first one is the news

    def raise_error(self) -> None:
        if self.error is None:
            return
        position, exc = self.error
        exc.add_note(f"Raised by {self.label}() call #{position}: {self.calls[position].describe()}")
        raise exc

    def expired(self, unfinished: list[tuple[int, str]], note: str = "") -> ParallelTimeout:
        return ParallelTimeout(self.label, self.timeout, self.calls, unfinished, self.results, note)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def values(self) -> list[Any]:
        for _ in self.finished():
            pass
        return [self.results[i] for i in range(len(self.calls))]

    def finished(self) -> Iterator[tuple[int, Any]]:
        """Yield ``(position, value)`` as calls finish; raise the first error at the end."""
        for position, value, exc in self.outcomes():
            if self.take(position, value, exc):
                if self.error is None:
                    yield position, self.results[position]
            else:
                self.stop()
        self.raise_error()

    # -- per mode --------------------------------------------------------------------------

    def outcomes(self) -> Iterator[tuple[int, Any, BaseException | None]]:
        raise NotImplementedError

    def stop(self) -> None:
        """Start no more calls (the first error happened)."""


class SerialRun(Run):
    def outcomes(self) -> Iterator[tuple[int, Any, BaseException | None]]:
        for position, call in enumerate(self.calls):
            if self.error is not None:
                return
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise self.expired(
                    [(i, "not started") for i in range(position, len(self.calls))],
                    " Calls ran one after another (inline mode, or nested inside a parallel call), "
                    "so the timeout covered their sum.",
                )
            # A copy per call, as in the pool: context changes a call makes do not leak.
            context = contextvars.copy_context()
            try:
                value = context.run(call.fn, *call.args, **(call.kwargs or {}))
            except BaseException as exc:  # handed to the caller as from a thread, KeyboardInterrupt too
                yield position, None, exc
            else:
                yield position, value, None


class ThreadRun(Run):
    def __init__(self, label: str, calls: list[Call], timeout: float | None, return_exceptions: bool,
                 limit: int) -> None:
        super().__init__(label, calls, timeout, return_exceptions)
        self.limit = limit
        self._lock = threading.Lock()
        self._next = 0
        self._stopped = False
        self._futures: dict[int, Future] = {}
        self._done: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._context = contextvars.copy_context()
        self._state = RequestState.capture()
        self._pool = get_pool()

    def _feed(self) -> None:
        with self._lock:
            if self._stopped or self._next >= len(self.calls):
                return
            position = self._next
            self._next += 1
            call = self.calls[position]
            future = self._pool.submit(
                run_call, self._context.copy(), self._state, call.fn, call.args, call.kwargs or {}
            )
            self._futures[position] = future
        # Outside the lock: a future that already finished runs the callback right here.
        future.add_done_callback(functools.partial(self._finished, position))

    def _finished(self, position: int, future: Future) -> None:
        self._done.put(position)
        self._feed()

    def _expected(self) -> int:
        with self._lock:
            return self._next if self._stopped else len(self.calls)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            futures = list(self._futures.values())
        for future in futures:
            future.cancel()  # only succeeds for calls that have not started

    def outcomes(self) -> Iterator[tuple[int, Any, BaseException | None]]:
        for _ in range(min(self.limit, len(self.calls))):
            self._feed()
        received = 0
        try:
            while received < self._expected():
                try:
                    position = self._done.get(timeout=self.remaining())
                except queue.Empty:
                    if self.error is not None:
                        return  # the deadline passed while the running calls finished: raise the error
                    unfinished = self._unfinished()
                    self.stop()
                    raise self.expired(unfinished) from None
                received += 1
                with self._lock:
                    future = self._futures.pop(position)
                if future.cancelled():
                    continue
                exc = future.exception()
                yield position, (None if exc is not None else future.result()), exc
        finally:
            # Also reached when an as_completed() consumer stops early: start nothing more.
            self.stop()

    def _unfinished(self) -> list[tuple[int, str]]:
        with self._lock:
            states = [(i, "running" if f.running() else "not started")
                      for i, f in self._futures.items() if not f.done()]
            states += [(i, "not started") for i in range(self._next, len(self.calls))]
        return sorted(states)
