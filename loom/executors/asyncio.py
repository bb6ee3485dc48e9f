"""AsyncExecutor: one event loop in its own thread for ``async def`` tasks, with a concurrency cap.

Coroutines share the loop, so hundreds of I/O-bound tasks wait side by side without a thread
each; a semaphore caps how many run at once. A coroutine that blocks the loop (CPU work, blocking
I/O) stalls the others: such tasks belong in threads or processes (see docs/worker.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any


class AsyncExecutor:
    def __init__(self, limit: int, name: str = "loom-loop") -> None:
        if limit < 1:
            raise ValueError(f"an async executor needs a limit of at least 1, got {limit}")
        self.limit = limit
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._semaphore = asyncio.Semaphore(self.limit)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    async def _limited(self, fn: Callable[..., Awaitable[Any]], args: tuple) -> Any:
        async with self._semaphore:
            return await fn(*args)

    def submit(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(self._limited(fn, args), self.loop)

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
