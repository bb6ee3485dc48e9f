"""AsyncExecutor: one event loop in its own thread for ``async def`` tasks, with a concurrency cap.

Coroutines share the loop, so hundreds of I/O-bound tasks wait side by side without a thread
each; a semaphore caps how many run at once. A coroutine that blocks the loop (CPU work, blocking
I/O) stalls the others: such tasks belong in threads or processes (see docs/worker.md).

The loop starts with the first submitted coroutine. ``shutdown()`` cancels whatever still runs,
lets the cancellations finish, then stops and closes the loop, so nothing is left pending (no
"Task was destroyed but it is pending!").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

# Seconds shutdown() waits for cancelled coroutines to unwind.
SHUTDOWN_WAIT = 5.0


class AsyncExecutor:
    def __init__(self, limit: int, name: str = "loom-loop") -> None:
        if limit < 1:
            raise ValueError(f"an async executor needs a limit of at least 1, got {limit}")
        self.limit = limit
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _start(self) -> None:
        with self._start_lock:
            if self.loop is not None:
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(loop, ready), name=self.name, daemon=True)
            self._thread.start()
            ready.wait()
            self.loop = loop

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._semaphore = asyncio.Semaphore(self.limit)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _limited(self, fn: Callable[..., Awaitable[Any]], args: tuple) -> Any:
        async with self._semaphore:
            return await fn(*args)

    def submit(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Future:
        if self.loop is None:
            self._start()
        return asyncio.run_coroutine_threadsafe(self._limited(fn, args), self.loop)

    def shutdown(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(SHUTDOWN_WAIT)
        except Exception:
            pass  # a coroutine that ignores cancellation: the process exits without it
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(SHUTDOWN_WAIT)
