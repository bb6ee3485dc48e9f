"""Phase: the one wording of where a task stands, shared by every page, list, bar and the admin.

Built from the stored row alone by ``phase_of(record)``, so a task's header, its row in a list,
its progress bar and the admin cannot disagree: each shows ``Phase.label`` (and the task page
``Phase.detail``). The labels:

=================  ======================================================================
Ready              READY, never ran, due now: waiting for a worker
Scheduled          READY, never ran, due later (``run_after``)
Queued to retry    READY after an attempt ended (a retry, an operator's retry, a rescue), due now
Waiting to retry   READY after an attempt ended, due later: the back-off wait
Running            RUNNING
Stopping           RUNNING with a cancel requested: its worker stops it and records Cancelled
Successful         SUCCESSFUL
Failed             FAILED
Cancelled          CANCELLED (``cancel_requested`` no longer matters once a task is final)
=================  ======================================================================

A rescued task (its worker was lost) is "Queued to retry", with "after a lost worker" in the
detail, and "Running ... after a lost worker" when it runs again. It refuses to guess: the last
error is read only when the row was loaded with ``errors``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from loom.attempts import error_line
from loom.models import FINAL_STATUSES, Status, TaskRecord
from loom.store.operations import CANCELLED_BEFORE_RUN

# Attempts that ended because the worker running them was lost to the cluster.
LOST = ("loom.exceptions.WorkerLost", "loom.exceptions.LeaseLost")


@dataclass(frozen=True, slots=True)
class Phase:
    label: str
    # CSS modifier: ready, scheduled, waiting, running, stopping, successful, failed, cancelled.
    tone: str
    # One sentence for the task page (may be "").
    detail: str
    final: bool


def _clock(value: dt.datetime | None) -> str:
    return timezone.localtime(value).strftime("%H:%M:%S") if value else "?"


def _of(number: int, record: TaskRecord) -> str:
    if number > record.max_attempts:
        return f"attempt {number} (an extra run after a lost worker)"
    return f"attempt {number} of {record.max_attempts}"


def _last_error(record: TaskRecord) -> dict | None:
    if "errors" in record.get_deferred_fields():
        return None
    errors = [e for e in record.errors or [] if isinstance(e, dict)]
    return errors[-1] if errors else None


def phase_of(record: TaskRecord, now: dt.datetime | None = None) -> Phase:
    """Where ``record`` stands, in the words every view uses (see the module docstring)."""
    now = now or timezone.now()
    status, n = record.status, record.attempts
    last = _last_error(record)
    lost = bool(last and last.get("exception_class_path") in LOST)
    if status == Status.READY:
        due = record.available_at is None or record.available_at <= now
        if not n:
            if due:
                return Phase("Ready", "ready", "Waiting for a worker.", False)
            return Phase("Scheduled", "scheduled", f"Runs at {_clock(record.available_at)}.", False)
        why = " after a lost worker" if lost else ""
        if due:
            return Phase("Queued to retry", "ready",
                         f"{_of(n + 1, record).capitalize()} waits for a worker{why}.", False)
        return Phase("Waiting to retry", "waiting",
                     f"{_of(n + 1, record).capitalize()} starts at {_clock(record.available_at)}{why}.", False)
    if status == Status.RUNNING:
        worker = record.claimed_by or "a worker"
        if record.cancel_requested:
            return Phase("Stopping", "stopping",
                         f"Cancel requested: {worker} stops attempt {n} and records it as cancelled.", False)
        after = " after a lost worker" if lost else ""
        return Phase("Running", "running", f"{_of(n, record).capitalize()} on {worker}{after}.", False)
    if status == Status.SUCCESSFUL:
        return Phase("Successful", "successful",
                     "On the first attempt." if n <= 1 else f"On {_of(n, record)}.", True)
    if status == Status.FAILED:
        error = f": {error_line(last)}" if last else ""
        return Phase("Failed", "failed", f"After {n} attempt{'' if n == 1 else 's'}{error}.", True)
    if status == Status.CANCELLED:
        return Phase("Cancelled", "cancelled", _cancelled(record, last), True)
    return Phase(str(status).capitalize(), str(status).lower(), "", status in FINAL_STATUSES)


def _cancelled(record: TaskRecord, last: dict | None) -> str:
    if last and isinstance(last.get("attempt"), int):
        return f"Stopped during attempt {last['attempt']}."
    if not record.attempts:
        return "Cancelled before it ran."
    if last and ("attempt" in last or last.get("traceback") == CANCELLED_BEFORE_RUN):
        # an operator's cancel of a task waiting to retry
        return f"Cancelled while waiting for attempt {record.attempts + 1}."
    message = error_line(last).partition(": ")[2] if last else ""
    return message or "Cancelled."
