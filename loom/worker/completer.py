"""Completer: gathers outcomes for a few milliseconds and writes them in one statement.

Batching the write is where most of the throughput comes from: one UPDATE for many tasks
instead of a transaction per task. A task counts as done only once its outcome is written; if
the worker dies before that, the lease expires and the task runs again (at-least-once).

A batch the database refuses is never retried as it is forever. If the database is away (it does
not answer a trivial query) or the error is transient (a lost connection, lock contention), the
batch is kept and tried again with the service's backoff. Otherwise one of its outcomes is bad:
the batch is split in halves until the bad outcome stands alone; that task alone ends FAILED with
an ``OutcomeNotStored`` error naming the database's reason, and the rest are written.

Once written, each final outcome's ``finished``/``failed`` event is announced
(``loom.events.tasks.announce``); on PostgreSQL with its NOTIFY broker on the same database the
UPDATE itself carries them (``inline_finished``), for the rows it wrote only. An outcome the
database refused is not announced (its task fails with ``OutcomeNotStored`` instead).

Configure with OPTIONS["COMPLETE_DELAY"] (seconds to gather) and OPTIONS["BATCH_SIZE"].
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from django.db import DatabaseError, InterfaceError
from django.utils import timezone

from loom import faults
from loom.events.tasks import announce, inline_finished
from loom.records import Outcome
from loom.service import Service
from loom.store import Store

logger = logging.getLogger("loom.worker")

# Seconds the completer keeps trying to write what is left when the worker stops.
STOP_DEADLINE = 30.0


class Completer(Service):
    name = "completer"
    max_retry_delay = 2.0

    def __init__(self, store: Store, worker_id: str, *, delay: float, batch_size: int,
                 on_written: Callable[[Sequence[str]], None] | None = None) -> None:
        super().__init__()
        self.on_written = on_written
        self._lock = threading.Lock()
        self._outstanding = 0  # put but not yet written
        self.store = store
        self.worker_id = worker_id
        self.delay = delay
        self.batch_size = batch_size
        self._queue: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._pending: list[Outcome] = []
        self.written = 0
        self.refused = 0
        self.fenced = 0  # late outcomes the claim guard refused
        self._quiet: set[str] = set()  # ids of this flush not to announce (carried inline, or refused)

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

    def flush(self) -> None:
        """Write what is pending now; raise (keeping what is unwritten) if the database is away."""
        self._gather(0)
        while self._pending:
            batch = self._pending[: self.batch_size]
            self._write(batch)
            del self._pending[: len(batch)]
            self._done(batch)

    def _write(self, batch: list[Outcome]) -> None:
        if any(o.workflow_step is not None or o.written for o in batch):
            for outcome in batch:
                if outcome.workflow_step is not None and not outcome.written:
                    self._write_step(outcome)
            batch = [o for o in batch if o.workflow_step is None and not o.written]
            if not batch:
                return
        try:
            written = self._complete(batch)
        except (DatabaseError, InterfaceError) as exc:
            if faults.transient(exc) or not self.store.answers():
                raise  # an outage: keep the batch, the service retries with backoff
            if len(batch) == 1:
                self._refuse(batch[0], exc)
                return
        else:
            if written < len(batch):
                # The claim guard refused them: the lease expired and the task was rescued (and
                # maybe run by another worker) before this outcome arrived. Nothing to undo.
                self.fenced += len(batch) - written
                logger.warning("loom completer: %d late outcome(s) not written: this worker no longer "
                               "held their tasks (rescued after the lease expired)", len(batch) - written)
            return
        middle = len(batch) // 2
        self._write(batch[:middle])
        self._write(batch[middle:])

    def _complete(self, batch: list[Outcome]) -> int:
        notify = inline_finished(self.store.alias, batch) if self.store.vendor == "postgresql" else None
        if notify is None:
            return self.store.complete_many(self.worker_id, batch)
        written = self.store.complete_many(self.worker_id, batch, notify=notify)
        self._quiet.update(o.id for o, payload in zip(batch, notify[1], strict=True) if payload is not None)
        return written

    def _write_step(self, outcome: Outcome) -> None:
        """A workflow step's outcome, and what follows from it (loom.workflow.engine), in one
        transaction: the next step exists exactly when this one is recorded as done."""
        from loom.workflow import engine

        try:
            engine.complete_step(self.store, self.worker_id, outcome)
        except (DatabaseError, InterfaceError) as exc:
            if faults.transient(exc) or not self.store.answers():
                raise
            self._refuse(outcome, exc)

    def _refuse(self, outcome: Outcome, exc: BaseException) -> None:
        """The database will not store this outcome: fail its task alone, saying why."""
        reason = f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc).strip()}"
        logger.error("loom completer: the outcome of task %s cannot be stored (%s); the task fails",
                     outcome.id, reason)
        self.refused += 1
        self._quiet.add(outcome.id)
        try:
            self.store.rescue(timezone.now(), task_ids=[outcome.id], claimed_by=self.worker_id, retry=False,
                              error_class="loom.exceptions.OutcomeNotStored",
                              error_text=f"loom.exceptions.OutcomeNotStored: the run ended ({outcome.status}) "
                                         f"but the database refused to store its outcome: {reason}\n")
        except (DatabaseError, InterfaceError) as again:
            if faults.transient(again) or not self.store.answers():
                raise
            # Not even the failure can be written: let go; its lease expires and it is rescued.
            logger.error("loom completer: could not fail task %s either (%s)", outcome.id, again)

    def _done(self, batch: Sequence[Outcome]) -> None:
        quiet, self._quiet = self._quiet, set()
        announce(o for o in batch if o.id not in quiet)
        self.written += len(batch)
        with self._lock:
            self._outstanding -= len(batch)
        if self.on_written is not None:
            self.on_written([o.id for o in batch])

    def on_stop(self) -> None:
        deadline = time.monotonic() + STOP_DEADLINE
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
