"""Completer: gathers outcomes for a few milliseconds and writes them in one statement.

Batching the write is where most of the throughput comes from: one UPDATE for many tasks
instead of a transaction per task. A task counts as done only once its outcome is written; if
the worker dies before that, the lease expires and the task runs again (at-least-once). A failed
write keeps the batch and retries it; outcomes are never dropped.

Configure with OPTIONS["COMPLETE_DELAY"] (seconds to gather) and OPTIONS["BATCH_SIZE"].
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from loom.records import Outcome
from loom.store import Store
from loom.worker.service import Service

logger = logging.getLogger("loom.worker")


class Completer(Service):
    name = "completer"

    def __init__(self, store: Store, worker_id: str, *, delay: float, batch_size: int,
                 on_flush: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.on_flush = on_flush
        self._lock = threading.Lock()
        self._outstanding = 0  # put but not yet written
        self.store = store
        self.worker_id = worker_id
        self.delay = delay
        self.batch_size = batch_size
        self._queue: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._pending: list[Outcome] = []
        self.written = 0

    @property
    def outstanding(self) -> int:
        """Outcomes handed in and not yet written (a burst worker waits for zero)."""
        with self._lock:
            return self._outstanding

    def put(self, outcome: Outcome) -> None:
        with self._lock:
            self._outstanding += 1
        self._queue.put(outcome)
        self.wake()

    def _gather(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while len(self._pending) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return
            self._pending.append(item)

    def run_once(self) -> float | None:
        if not self._pending:
            self._gather(0)
            if not self._pending:
                return None  # sleep until put() wakes us
            self._gather(self.delay)
        self.flush()
        return 0 if not self._queue.empty() else None

    def flush(self) -> int:
        """Write what is pending now; raise (keeping the batch) if the database refuses."""
        self._gather(0)
        written = 0
        while self._pending:
            batch = self._pending[: self.batch_size]
            written += self.store.complete_many(self.worker_id, batch)
            del self._pending[: len(batch)]
            self.written += len(batch)
            with self._lock:
                self._outstanding -= len(batch)
            if self.on_flush is not None:
                self.on_flush()
        return written

    def on_stop(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.flush()
                return
            except Exception:
                if time.monotonic() > deadline:
                    logger.exception("loom completer could not write %d outcomes; they will be "
                                     "rescued and run again", len(self._pending))
                    return
                time.sleep(0.5)
