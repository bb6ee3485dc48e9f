"""Values that cross threads and processes: a claimed task going in, an outcome coming out.

Both are frozen and picklable (plain data only), so the same values serve the thread pool, the
event loop and, later, child processes. Neither knows about the database.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """A validated enqueue, as ``Store.insert`` writes it (arguments already JSON-normalised)."""

    id: uuid.UUID
    task_path: str
    backend: str
    queue_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: dt.datetime | None
    available_at: dt.datetime
    enqueued_at: dt.datetime
    max_attempts: int
    timeout: float | None
    hard_timeout: float | None
    trace_context: dict[str, str] | None = None  # loom.telemetry: the enqueue's span context
    # Flow control (loom.task.Task's options; docs/flow-control.md).
    unique_key: str | None = None
    unique_window: float | None = None
    unique_replace: bool = False
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    fair_key: str | None = None
    workflow_step: uuid.UUID | None = None  # the loom.workflow node this task runs
    atomic: bool = False  # loom.task.Task's option: body and success commit together

    @property
    def flow(self) -> bool:
        """Claimed through the flow-control path (loom.store.flow), not the plain claim."""
        return self.concurrency_key is not None or self.fair_key is not None


# The columns a claim returns: ClaimedTask's fields, in this order (loom.store.rows converts them).
CLAIM_COLUMNS = ("id", "task_path", "backend", "queue_name", "priority", "run_after", "args", "kwargs",
                 "available_at", "enqueued_at", "started_at", "last_attempted_at", "attempts", "max_attempts", "timeout",
                 "worker_ids", "errors",
                 "trace_context", "unique_window", "workflow_step", "atomic")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedTask:
    """A row this worker holds a lease on, with everything needed to run it once, as the claim
    statement returned it (``attempts`` already counts this run)."""

    id: str
    task_path: str
    backend: str
    queue_name: str
    priority: int
    run_after: dt.datetime | None
    args: list[Any]
    kwargs: dict[str, Any]
    available_at: dt.datetime
    enqueued_at: dt.datetime
    started_at: dt.datetime | None
    last_attempted_at: dt.datetime | None
    attempts: int
    max_attempts: int
    timeout: float | None = None
    worker_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    trace_context: dict[str, str] | None = None  # loom.telemetry: parent of the run's span
    unique_window: float | None = None  # seconds a finished run keeps its unique key
    workflow_step: str | None = None  # the loom.workflow node this task runs
    atomic: bool = False  # run in one transaction with its success (loom.worker.atomic)

    def after_claim(self, worker_id: str, now: dt.datetime) -> "ClaimedTask":
        """The row as the claim left it, for databases whose claim reads before it writes."""
        return replace(self, attempts=self.attempts + 1, started_at=self.started_at or now,
                       last_attempted_at=now, worker_ids=[*self.worker_ids, worker_id])

    @property
    def worker_id(self) -> str | None:
        return self.worker_ids[-1] if self.worker_ids else None

    def error_entry(self, exception_class_path: str, traceback: str, finished_at: dt.datetime) -> dict[str, Any]:
        """One entry of ``errors``: this attempt, ended without success (see error_entry)."""
        return error_entry(exception_class_path, traceback, attempt=self.attempts, worker_id=self.worker_id,
                           started_at=self.last_attempted_at, finished_at=finished_at)


def error_entry(exception_class_path: str, traceback: str, *, attempt: int, worker_id: str | None,
                started_at: dt.datetime | None, finished_at: dt.datetime | None) -> dict[str, Any]:
    """An attempt that ended without success, as stored in ``errors``: Django's two TaskError keys
    plus which attempt it was, on which worker, and when it started and ended (ISO 8601), so tools
    can show each attempt's history. The rescue statements write the same keys in SQL."""
    return {
        "exception_class_path": exception_class_path,
        "traceback": traceback,
        "attempt": attempt,
        "worker_id": worker_id,
        "started_at": started_at.isoformat() if started_at else None,
        "finished_at": finished_at.isoformat() if finished_at else None,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one attempt produced, ready to be written by ``Store.complete_many``.

    ``status`` is final (SUCCESSFUL, FAILED, CANCELLED) or READY when the task will be retried at
    ``available_at``. JSON is already encoded, so a value that cannot be encoded fails the task
    in ``execution`` instead of failing a whole batch write later. ``attempt`` fences the write:
    it lands only on the run that produced it.
    """

    id: str
    status: str
    finished_at: dt.datetime | None
    available_at: dt.datetime | None
    return_value_json: str | None
    errors_json: str
    attempt: int
    # A final outcome of a task with a unique_window: until when it keeps its unique key.
    unique_until: dt.datetime | None = None
    # The loom.workflow node the task runs: its outcome also moves the workflow on (Completer).
    workflow_step: str | None = None
    # Already written, in the task's own transaction (an atomic task): the Completer skips it.
    written: bool = False
    # Which task ran, for the ``finished``/``failed`` event announced once the outcome is written
    # (loom.events.tasks.announce); empty: nothing to announce.
    task_path: str = ""
    queue_name: str = ""
