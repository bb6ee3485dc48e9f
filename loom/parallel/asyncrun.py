"""AsyncRun: one ``parallel.amap``/``agather`` call, awaited on the caller's event loop.

Coroutine functions (and, for ``agather``, awaitables) run as tasks on the running loop; plain
callables run in the shared pool's threads exactly as for ``parallel.map`` (context carried,
connections closed) and are awaited without blocking the loop. One ``asyncio.Semaphore`` caps how
many calls of the run are in flight, of either kind.

Errors and timeouts follow ``loom.parallel.run``, with one difference: coroutines *can* be
cancelled. On the first error, coroutines and calls not yet started are cancelled, calls running
in a thread are awaited (until the deadline), then the error is raised. On timeout, coroutines are
cancelled and awaited; threads already running finish in the background. If the caller itself is
cancelled (a client disconnected), everything is cancelled the same way and the cancellation
propagates.

In inline mode, and when called from inside a pool thread, plain callables run through
``sync_to_async(thread_sensitive=True)`` instead of the pool: in inline mode one call at a time, so
a test's open transaction is visible to them.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from concurrent.futures import Future
from typing import Any

from asgiref.sync import sync_to_async

from loom.parallel.calls import Call
from loom.parallel.context import RequestState, run_call
from loom.parallel.pool import get_pool
from loom.parallel.run import Run


class AsyncRun(Run):
    def __init__(self, label: str, calls: list[Call], timeout: float | None, return_exceptions: bool,
                 limit: int, use_pool: bool) -> None:
        super().__init__(label, calls, timeout, return_exceptions)
        self.limit = limit
        self.use_pool = use_pool
        self._started = [False] * len(calls)
        self._futures: dict[int, Future[Any]] = {}

    async def avalues(self) -> list[Any]:
        if not self.calls:
            return []
        self._semaphore = asyncio.Semaphore(self.limit)
        self._state = RequestState.capture() if self.use_pool else None
        tasks = {asyncio.ensure_future(self._one(i)): i for i in range(len(self.calls))}
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=self.remaining(), return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    unfinished = sorted((tasks[t], self._state_of(tasks[t])) for t in pending)
                    await self._cancel(pending)
                    pending = set()
                    if self.error is None:
                        raise self.expired(unfinished)
                    break  # the deadline passed while the running calls finished: raise the error
                for task in done:
                    if task.cancelled():
                        if self.error is not None:
                            continue  # cancelled by _stop
                        exc: BaseException | None = asyncio.CancelledError(
                            f"{self.calls[tasks[task]].describe()} was cancelled")
                    else:
                        exc = task.exception()
                    if not self.take(tasks[task], None if exc is not None else task.result(), exc):
                        self._stop(pending, tasks)
        except asyncio.CancelledError:
            await self._cancel(pending)
            raise
        finally:
            self._close_unstarted()
        self.raise_error()
        return [self.results[i] for i in range(len(self.calls))]

    async def _one(self, position: int) -> Any:
        call = self.calls[position]
        async with self._semaphore:
            self._started[position] = True
            if call.awaitable is not None:
                return await call.awaitable
            assert call.fn is not None  # only agather's awaitables come without one
            if call.is_async:
                return await call.fn(*call.args, **(call.kwargs or {}))
            if not self.use_pool:
                return await sync_to_async(call.fn, thread_sensitive=True)(*call.args, **(call.kwargs or {}))
            future = get_pool().submit(
                run_call, contextvars.copy_context(), self._state, call.fn, call.args, call.kwargs or {}
            )
            self._futures[position] = future
            value = await asyncio.wrap_future(future)
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise TypeError(
                f"{call.describe()} returned an awaitable from a thread; pass the coroutine function "
                "itself (or the awaitable, to agather) so it runs on the event loop."
            )
        return value

    def _state_of(self, position: int) -> str:
        future = self._futures.get(position)
        if future is not None:
            return "running" if future.running() else "not started"
        return "running" if self._started[position] else "not started"

    def _stop(self, pending: set[asyncio.Task[Any]], tasks: dict[asyncio.Task[Any], int]) -> None:
        for task in pending:
            future = self._futures.get(tasks[task])
            if future is None:
                task.cancel()  # a coroutine, or a call waiting for a free slot
            else:
                future.cancel()  # succeeds only if no thread has started it; then the task ends too

    async def _cancel(self, pending: set[asyncio.Task[Any]]) -> None:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _close_unstarted(self) -> None:
        # An awaitable handed to agather that never got a slot would warn "never awaited".
        for position, call in enumerate(self.calls):
            if not self._started[position] and inspect.iscoroutine(call.awaitable):
                call.awaitable.close()
