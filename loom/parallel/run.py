"""Run: one ``parallel.map``/``gather``/``as_completed`` call from the calling thread's side.

``Run`` keeps the bookkeeping every mode shares: results by input position, the first error, the
deadline. Its two sync forms differ only in where calls execute:

* ``ThreadRun`` feeds calls to the shared pool (``loom.parallel.pool``), never more than
  ``limit`` of them queued or running at once, so one big ``map`` cannot fill the pool's queue
  ahead of other requests. The next call is submitted from the finishing call's callback, and the
  caller wakes only when all are in or at the first error (``as_completed``: at each outcome).
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
        assert self.timeout is not None  # only a run with a timeout expires
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
                assert call.fn is not None  # only agather's awaitables come without one
                value = context.run(call.fn, *call.args, **(call.kwargs or {}))
            except BaseException as exc:  # handed to the caller as from a thread, KeyboardInterrupt too
                yield position, None, exc
            else:
                yield position, value, None


class ThreadRun(Run):
    def __init__(self, label: str, calls: list[Call], timeout: float | None, return_exceptions: bool,
                 limit: int, streaming: bool = False) -> None:
        super().__init__(label, calls, timeout, return_exceptions)
        self.limit = limit
        # as_completed wants each outcome at once; map only needs waking when all are in (or on
        # the first error), which spares the caller a thread switch per call.
        self.streaming = streaming
        self._cond = threading.Condition(threading.Lock())
        self._next = 0
        self._stopped = False
        self._futures: dict[int, Future[Any]] = {}
        self._arrived: list[tuple[int, Any, BaseException | None] | None] = []  # None: cancelled
        self._consumed = 0
        self._wake = False
        self._context = contextvars.copy_context()
        self._state = RequestState.capture()
        self._pool = get_pool()

    def _feed(self) -> None:
        with self._cond:
            future = self._submit_locked()
        if future is not None:
            self._watch(future)

    def _submit_locked(self) -> Future[Any] | None:
        if self._stopped or self._next >= len(self.calls):
            return None
        position = self._next
        self._next += 1
        call = self.calls[position]
        future = self._pool.submit(
            run_call, self._context.copy(), self._state, call.fn, call.args, call.kwargs or {}
        )
        future.position = position  # type: ignore[attr-defined]  # read by _finished
        self._futures[position] = future
        return future

    def _watch(self, future: Future[Any]) -> None:
        # Outside the lock: a future that already finished runs the callback right here.
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[Any]) -> None:
        position: int = future.position  # type: ignore[attr-defined]  # set by _submit_locked
        if future.cancelled():
            outcome = None
        else:
            exc = future.exception()
            outcome = (position, None if exc is not None else future.result(), exc)
        with self._cond:
            del self._futures[position]
            self._arrived.append(outcome)
            if outcome is not None and outcome[2] is not None and not self.return_exceptions:
                self._stopped = True  # at once: the caller only hears of the error after this
                self._wake = True
            following = self._submit_locked()
            if self._wake or self.streaming or self._all_in():
                self._cond.notify()
        if following is not None:
            self._watch(following)

    def _all_in(self) -> bool:
        expected = self._next if self._stopped else len(self.calls)
        return self._consumed + len(self._arrived) >= expected

    def _ready(self) -> bool:
        return self._all_in() or (bool(self._arrived) and (self._wake or self.streaming))

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            futures = list(self._futures.values())
        for future in futures:
            future.cancel()  # only succeeds for calls that have not started

    def outcomes(self) -> Iterator[tuple[int, Any, BaseException | None]]:
        for _ in range(min(self.limit, len(self.calls))):
            self._feed()
        try:
            while True:
                with self._cond:
                    ready = self._cond.wait_for(self._ready, self.remaining())
                    batch, self._arrived = self._arrived, []
                    self._consumed += len(batch)
                    self._wake = False
                    done = self._all_in()
                    unfinished = None if ready else self._unfinished()
                for outcome in batch:
                    if outcome is not None:
                        yield outcome
                if done:
                    return
                if unfinished is not None:
                    if self.error is not None:
                        return  # the deadline passed while the running calls finished: raise the error
                    self.stop()
                    raise self.expired(unfinished)
        finally:
            # Also reached when an as_completed() consumer stops early: start nothing more.
            self.stop()

    def _unfinished(self) -> list[tuple[int, str]]:
        states = [(i, "running" if f.running() else "not started")
                  for i, f in self._futures.items() if not f.done()]
        states += [(i, "not started") for i in range(self._next, len(self.calls))]
        return sorted(states)
