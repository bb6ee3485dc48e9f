"""Values that cross threads and processes: a claimed task going in, an outcome coming out.

Both are frozen and picklable (plain data only), so the same values serve the thread pool, the
event loop and, later, child processes. Neither knows about the database.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedTask:
    """A row this worker holds a lease on, with everything needed to run it once."""

    id: str
    task_path: str
    backend: str
    queue_name: str
    priority: int
    run_after: dt.datetime | None
    args: list[Any]
    kwargs: dict[str, Any]
    enqueued_at: dt.datetime
    started_at: dt.datetime | None
    last_attempted_at: dt.datetime | None
    attempts: int
    max_attempts: int
    timeout: float | None = None
    worker_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_record(cls, record) -> "ClaimedTask":
        return cls(
            id=str(record.id),
            task_path=record.task_path,
            backend=record.backend,
            queue_name=record.queue_name,
            priority=record.priority,
            run_after=record.run_after,
            args=list(record.args),
            kwargs=dict(record.kwargs),
            enqueued_at=record.enqueued_at,
            started_at=record.started_at,
            last_attempted_at=record.last_attempted_at,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            timeout=record.timeout,
            worker_ids=list(record.worker_ids),
            errors=list(record.errors),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one attempt produced, ready to be written by ``Store.complete_many``.

    ``status`` is final (SUCCESSFUL, FAILED) or READY when the task will be retried at
    ``available_at``. JSON is already encoded, so a value that cannot be stored fails the task in
    ``execution`` instead of failing a whole batch write later.
    """

    id: str
    status: str
    finished_at: dt.datetime | None
    available_at: dt.datetime | None
    return_value_json: str | None
    errors_json: str
