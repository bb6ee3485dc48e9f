"""A task's attempts as a history: the one place that reads ``TaskRecord.errors`` for people.

``history(record)`` returns one ``Attempt`` per run, oldest first: every run that ended without
success is an entry of ``errors`` (its ``attempt``, ``worker_id``, ``started_at``,
``finished_at`` and Django's ``exception_class_path`` and ``traceback``); the run in progress, or
the one that succeeded, is the row itself (``attempts``, ``last_attempted_at``, ``finished_at``,
``status``, ``worker_ids[-1]``). A READY task that already ran adds the attempt it waits for, with
when it is due, so retry back-off is visible. The row's ``started_at`` is the FIRST attempt's
start (Django's meaning), so a duration is only ever taken from one attempt's own start and end.

It tolerates rows written before entries carried those keys: the attempt number is then the
entry's position, the worker ``worker_ids[n - 1]``, and times are unknown except for the last
attempt of a finished row. An operator's cancel of a READY task adds an entry that is no attempt
(``attempt`` null, or the text ``CANCELLED_BEFORE_RUN``): it is shown as a cancel before a run.

``current_progress(record)`` is the progress of the attempt the row describes (never the bar of
an attempt that ended). ``error_line(entry)`` is how an error is shown everywhere: the last line of its traceback,
``Class: message`` (Python's own rendering), or the class path when there is no traceback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace

from django.utils.dateparse import parse_datetime

from loom.models import Status, TaskRecord
from loom.store.operations import CANCELLED_BEFORE_RUN

# How an attempt ended, by the class path of its error (anything else raised: "Failed").
OUTCOMES = {
    "loom.exceptions.WorkerLost": "Worker lost",
    "loom.exceptions.LeaseLost": "Lease lost",
    "loom.exceptions.TimeLimitExceeded": "Timed out",
    "loom.exceptions.TaskCancelled": "Cancelled",
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a task (or, with ``number`` None, a cancel before it could run)."""

    number: int | None
    outcome: str
    worker_id: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    # The waiting attempt of a READY task: when it becomes due.
    due_at: dt.datetime | None = None
    error_class: str = ""
    error: str = ""
    traceback: str = ""
    # Seconds between the previous attempt's end and this one's start (retry back-off).
    waited: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return max(0.0, (self.finished_at - self.started_at).total_seconds())
        return None

    @property
    def ended(self) -> bool:
        return self.outcome not in ("Running", "Stopping", "Waiting")


def error_line(entry: Mapping) -> str:
    """``Class: message`` from the last line of an error entry's traceback."""
    lines = [line for line in str(entry.get("traceback") or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else str(entry.get("exception_class_path") or "error")


def last_error_line(errors: list | None) -> str:
    """The error line of the newest entry, or "" for none."""
    return error_line(errors[-1]) if errors else ""


def current_progress(record: TaskRecord):
    """The progress of the attempt the row describes, or None.

    A READY row waits for its next attempt, and a report older than the last attempt's start
    belongs to an attempt that ended: neither is this attempt's progress."""
    from loom.progress import Progress

    if record.progress_current is None or record.status == Status.READY:
        return None
    if record.last_attempted_at and record.progress_at and record.progress_at < record.last_attempted_at:
        return None
    return Progress(record.progress_current, record.progress_total, record.progress_message, record.progress_at)


def _time(value) -> dt.datetime | None:
    """An entry's time: ISO 8601 text; naive text (SQLite's own datetime text) is UTC, as Django
    stores it there."""
    parsed: dt.datetime | None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = parse_datetime(value)
        except ValueError:
            return None
    else:
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _worker(record: TaskRecord, number: int | None) -> str | None:
    ids = record.worker_ids or []
    if number is not None and 1 <= number <= len(ids):
        return ids[number - 1]
    return None


def _from_entry(record: TaskRecord, entry: Mapping, position: int, last: bool) -> Attempt:
    if "attempt" in entry:
        number = entry["attempt"] if isinstance(entry["attempt"], int) else None
    elif entry.get("traceback") == CANCELLED_BEFORE_RUN:
        number = None
    else:  # written before entries carried their attempt: position, if a run that many happened
        number = position if position <= record.attempts else None
    class_path = str(entry.get("exception_class_path") or "")
    started, finished = _time(entry.get("started_at")), _time(entry.get("finished_at"))
    if last and record.status in (Status.FAILED, Status.CANCELLED) and "finished_at" not in entry:
        started, finished = (record.last_attempted_at if number else None), record.finished_at
    return Attempt(
        number=number,
        outcome=OUTCOMES.get(class_path, "Failed"),
        worker_id=entry.get("worker_id") if "worker_id" in entry else _worker(record, number),
        started_at=started,
        finished_at=finished,
        error_class=class_path,
        error=error_line(entry),
        traceback=str(entry.get("traceback") or ""),
    )


def _current(record: TaskRecord) -> Attempt | None:
    """The attempt the row itself describes: running, succeeded, or waiting to start."""
    worker = record.claimed_by or (record.worker_ids or [None])[-1]
    if record.status == Status.RUNNING:
        return Attempt(record.attempts, "Stopping" if record.cancel_requested else "Running", worker,
                       record.last_attempted_at)
    if record.status == Status.SUCCESSFUL:
        return Attempt(record.attempts, "Successful", worker, record.last_attempted_at, record.finished_at)
    if record.status == Status.READY and record.attempts:
        return Attempt(record.attempts + 1, "Waiting", due_at=record.available_at)
    return None


def history(record: TaskRecord) -> list[Attempt]:
    """Every attempt of ``record``, oldest first (see the module docstring)."""
    entries = [e for e in (record.errors or []) if isinstance(e, Mapping)]
    found = [_from_entry(record, e, i, i == len(entries)) for i, e in enumerate(entries, 1)]
    current = _current(record)
    if current is not None and not any(a.number == current.number for a in found):
        found.append(current)
    shown, previous_end = [], None
    for attempt in found:
        if attempt.number is not None and previous_end and attempt.started_at:
            attempt = replace(attempt, waited=max(0.0, (attempt.started_at - previous_end).total_seconds()))
        shown.append(attempt)
        if attempt.finished_at:
            previous_end = attempt.finished_at
    return shown

