"""In-request concurrency that is safe with Django: ``from loom import parallel``.

::

    prices = parallel.map(fetch_price, symbols, max_workers=8, timeout=5)
    user, feed = parallel.gather((load_user, (uid,)), (load_feed, (uid,), {"limit": 20}))
    prices = await parallel.amap(fetch_price, symbols)          # in an async view

What it owns: running calls side by side inside one request (or task, or command) and handing
back their results in input order. Every call runs in a thread of one shared, bounded pool per
process (see ``loom.parallel.pool``), sees the caller's ``contextvars``, active language, time
zone and URLconf, and leaves no database connection open behind it. Errors keep their traceback;
``timeout`` raises ``ParallelTimeout`` naming the slow calls. ``docs/concurrency.md`` explains
when to use this, the backends, processes or ``async def``.

What it refuses: unbounded threads (``max_workers`` is capped by ``LOOM_PARALLEL_THREADS``);
blocking an event loop (``map`` called where a loop is running raises ``SynchronousOnlyOperation``;
use ``amap``); waiting on itself (a ``parallel`` call made inside a pool thread runs inline).
It cannot stop a call already running in a thread: after a timeout such calls finish in the
background and their results are dropped.

Configure::

    LOOM_PARALLEL_THREADS = 16    # threads in the shared pool: the hard cap per process
    LOOM_PARALLEL_INLINE = False  # True: run every call serially in the calling thread (tests)

``with parallel.inline():`` does the same as ``LOOM_PARALLEL_INLINE`` for one block. Inline mode
is for tests: calls then see the data of Django's ``TestCase`` transaction, which pool threads,
on their own connections, cannot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.core.exceptions import SynchronousOnlyOperation

from loom.parallel.asyncrun import AsyncRun
from loom.parallel.calls import Call, ParallelTimeout, check_options, gather_calls, map_calls
from loom.parallel.context import inline, inline_active, inside_pool
from loom.parallel.pool import pool_size
from loom.parallel.run import Run, SerialRun, ThreadRun

__all__ = ["ParallelTimeout", "agather", "amap", "as_completed", "gather", "inline", "map"]

T = TypeVar("T")
R = TypeVar("R")


def map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[R]:
    """Call ``fn(item)`` for every item, side by side; return the results in input order.

    ``max_workers`` caps how many calls of this map run at once (default and ceiling: the pool
    size). ``timeout`` bounds the whole map in seconds. With ``return_exceptions=True`` a failed
    call's exception takes its place in the list instead of being raised.
    """
    check_options(max_workers, timeout)
    calls = map_calls(fn, items, "parallel.map")
    return _sync_run("parallel.map", calls, max_workers, timeout, return_exceptions).values()


def gather(
    *calls: Callable[[], Any] | tuple[Any, ...],
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """Run different calls side by side; return their results in the order given.

    Each call is a callable taking no arguments, ``(fn, args)`` or ``(fn, args, kwargs)``.
    """
    check_options(max_workers, timeout)
    specs = gather_calls(calls, "parallel.gather")
    return _sync_run("parallel.gather", specs, max_workers, timeout, return_exceptions).values()


def as_completed(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    max_workers: int | None = None,
    timeout: float | None = None,
) -> Iterator[tuple[int, R]]:
    """Like ``map``, but yield ``(position, result)`` as each call finishes.

    For showing partial results early. Leaving the loop early cancels the calls not yet started.
    """
    check_options(max_workers, timeout)
    calls = map_calls(fn, items, "parallel.as_completed")
    return _sync_run("parallel.as_completed", calls, max_workers, timeout, False, streaming=True).finished()


async def amap(
    fn: Callable[[T], R] | Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[R]:
    """``map`` for async code: coroutine functions run on this loop, plain ones in the pool."""
    check_options(max_workers, timeout)
    calls = map_calls(fn, items, "parallel.amap")
    return await _async_run("parallel.amap", calls, max_workers, timeout, return_exceptions).avalues()


async def agather(
    *calls: Callable[[], Any] | Awaitable[Any] | tuple[Any, ...],
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """``gather`` for async code; a call may also be an awaitable, as for ``asyncio.gather``."""
    check_options(max_workers, timeout)
    specs = gather_calls(calls, "parallel.agather", awaitables=True)
    return await _async_run("parallel.agather", specs, max_workers, timeout, return_exceptions).avalues()


def _limit(max_workers: int | None, count: int) -> int:
    return max(1, min(max_workers or count, pool_size(), count))


def _sync_run(label: str, calls: list[Call], max_workers: int | None, timeout: float | None,
              return_exceptions: bool, streaming: bool = False) -> Run:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise SynchronousOnlyOperation(
            f"{label}() waits for its calls and would block the running event loop; in async code "
            "use `await parallel.amap(...)` or `await parallel.agather(...)`, or call it through "
            "`await sync_to_async(...)`."
        )
    if inline_active() or inside_pool():
        return SerialRun(label, calls, timeout, return_exceptions)
    return ThreadRun(label, calls, timeout, return_exceptions, _limit(max_workers, len(calls)), streaming)


def _async_run(label: str, calls: list[Call], max_workers: int | None, timeout: float | None,
               return_exceptions: bool) -> AsyncRun:
    if inline_active():
        return AsyncRun(label, calls, timeout, return_exceptions, limit=1, use_pool=False)
    use_pool = not inside_pool()
    limit = max(1, min(max_workers or len(calls), len(calls) or 1))
    if use_pool and not all(call.is_async for call in calls):
        # Threads are capped by the pool; coroutines are cheap, so only max_workers caps them.
        limit = min(limit, pool_size())
    return AsyncRun(label, calls, timeout, return_exceptions, limit=limit, use_pool=use_pool)
