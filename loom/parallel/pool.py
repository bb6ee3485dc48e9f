"""Pool: the one bounded set of threads per process behind ``loom.parallel``.

Created on first use with ``settings.LOOM_PARALLEL_THREADS`` threads at most (default
``DEFAULT_THREADS``); threads start only when work waits and none is idle. That number is a hard
cap shared by every ``parallel`` call in the process, whatever ``max_workers`` asks for. Changing
the setting (``override_settings``) replaces the pool; a forked child starts without one.

After each call a pool thread treats its Django connections as Django treats a request thread's:
``close_old_connections()``, so with the default ``CONN_MAX_AGE = 0`` whatever the call opened is
closed (or handed back to Django's connection pool, when one is configured), and with persistent
connections a thread keeps at most one per alias, checked again before its next call. This
happens *before* the call's future is resolved: when ``parallel.map`` returns, its calls hold no
connection. A call that opened no connection (Django's ``connection_created`` signal) skips the
check. (That ordering, and one check per call at most instead of three, is why this is not
``loom.executors.threads.ThreadExecutor``, which the worker uses.)

Threads are daemons: a process that exits abandons calls still running, as it would any thread.
This module starts nothing at import and opens no database connection itself.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created

# Threads in the shared pool when settings.LOOM_PARALLEL_THREADS is not set: enough for a view's
# fan-out to a dozen services, few enough that persistent connections cannot exhaust a database.
DEFAULT_THREADS = 16


# A queued call: its future, the function and its arguments.
_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class Pool:
    def __init__(self, size: int, name: str = "loom-parallel") -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least 1 thread, got {size}")
        self.size = size
        self.name = name
        self.threads: list[threading.Thread] = []
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # Released by a thread each time it finishes a call: a permit means an idle thread.
        self._idle = threading.Semaphore(0)
        self._start_lock = threading.Lock()
        # With persistent connections a thread keeps one open between calls, to check before and
        # after each call. Without, a call that opened none has nothing to close: skip the check.
        self._persistent = any(db.get("CONN_MAX_AGE", 0) != 0 for db in settings.DATABASES.values())

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn, args))
        if not self._idle.acquire(blocking=False):
            self._start_thread()
        return future

    def _start_thread(self) -> None:
        if len(self.threads) >= self.size:
            return
        with self._start_lock:
            if len(self.threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self.threads)}", daemon=True
                )
                thread.start()
                self.threads.append(thread)

    def shutdown(self) -> None:
        """Let the threads finish what is queued, then exit."""
        for _ in range(self.size):
            self._queue.put(None)

    def _work(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                future, fn, args = item
                del item
                if future.set_running_or_notify_cancel():
                    self._run(future, fn, args)
                else:
                    self._idle.release()
                del future, fn, args  # hold nothing of a finished call while idle
        finally:
            connections.close_all()

    def _run(self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self._persistent:
            close_old_connections()
        _opened.flag = False
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the caller, KeyboardInterrupt too
            self._after_call()
            future.set_exception(exc)
        else:
            self._after_call()
            future.set_result(result)

    def _after_call(self) -> None:
        if self._persistent or _opened.flag:
            close_old_connections()
        # Free from here: the caller's callback in set_result may submit the next call, which
        # this thread will take. (A permit released before the first call would let a second
        # submit skip starting a thread while this one is still busy.)
        self._idle.release()


# Per thread: did Django open a database connection since the flag was last cleared?
_opened = threading.local()


def _note_opened(sender: Any, connection: Any, **kwargs: Any) -> None:
    _opened.flag = True


connection_created.connect(_note_opened, dispatch_uid="loom.parallel.pool.opened")

_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool_size() -> int:
    size = getattr(settings, "LOOM_PARALLEL_THREADS", DEFAULT_THREADS)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ImproperlyConfigured(f"LOOM_PARALLEL_THREADS must be an integer >= 1, got {size!r}.")
    return size


def get_pool() -> Pool:
    """The shared pool, created on first use."""
    pool = _pool
    if pool is None:
        with _pool_lock:
            pool = _pool
            if pool is None:
                pool = Pool(pool_size())
                _set_pool(pool)
    return pool


def _set_pool(pool: Pool | None) -> Pool | None:
    global _pool
    _pool = pool
    return pool


def reset_pool() -> None:
    """Drop the shared pool; its threads finish the calls already queued, then exit."""
    with _pool_lock:
        old = _pool
        _set_pool(None)
    if old is not None:
        old.shutdown()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("LOOM_PARALLEL_THREADS", "DATABASES"):
        reset_pool()


setting_changed.connect(_on_setting_changed, dispatch_uid="loom.parallel.pool")
if hasattr(os, "register_at_fork"):
    # A forked child inherits the pool object but none of its threads.
    os.register_at_fork(after_in_child=lambda: _set_pool(None))
