"""Watchdog: enforces soft time limits on sync tasks and stops the runs whose leases ran out.

A sync task cannot be stopped from outside its thread, so the watchdog raises an exception in
that thread (``PyThreadState_SetAsyncExc``): ``TimeLimitExceeded`` at the soft limit
(``TaskCancelled`` for an operator's cancel: ``loom.worker.cancels``). Python code sees it at its
next bytecode; code blocked in C (a long ``time.sleep``, a socket read without timeout) sees it
only when that call returns, which is why the hard limit (the supervisor kills the process)
exists. Coroutines get the soft limit from ``asyncio.timeout`` in ``execution`` and are
cancelled with ``Task.cancel()``.

The watchdog never waits on the database (a query can hang for seconds when the network
drops packets, and limits must hold then too); it talks to InFlight (which tasks run where),
never to the Worker.

Once the heartbeat has not renewed the leases for a whole lease (``lapsed_before``: the worker
is cut off from the database, or stalled), the watchdog stops every run whose lease has run out
(claimed before the last renewal, or more than a lease ago) with ``LeaseLost``: their tasks may
already run elsewhere.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

from loom.exceptions import LeaseLost, TaskCancelled, TimeLimitExceeded
from loom.service import Service


def interrupt_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` in another thread at its next bytecode; False if the thread is gone."""
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
    if changed > 1:  # more than one thread hit: undo, as the C API asks
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return changed == 1


class Watchdog(Service):
    name = "watchdog"
    max_retry_delay = 1.0

    def __init__(self, inflight, *, interval: float = 0.1, clock: Callable[[], float] = time.monotonic,
                 lapsed_before: Callable[[], float | None] = lambda: None) -> None:
        super().__init__()
        self.inflight = inflight
        self.interval = interval
        self.clock = clock
        self.lapsed_before = lapsed_before

    def run_once(self) -> float:
        now = self.clock()
        for task_id in self.inflight.overdue(now):
            self.inflight.interrupt(task_id, TimeLimitExceeded)
        cutoff = self.lapsed_before()
        if cutoff is not None:
            self.inflight.abandon(self.inflight.running_ids(leased_before=cutoff), taken_over=False)
        return self.interval


__all__ = ["Watchdog", "interrupt_thread", "TaskCancelled", "LeaseLost"]
