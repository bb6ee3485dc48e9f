"""Where a task stands, in the words every view uses (``loom.phase``), from rows written here."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from loom.models import TaskRecord
from loom.phase import phase_of
from loom.store.operations import CANCELLED_BEFORE_RUN

pytestmark = pytest.mark.django_db

NOW = timezone.now()
LOST = {"exception_class_path": "loom.exceptions.WorkerLost", "traceback": "loom.exceptions.WorkerLost: gone\n"}
RAISED = {"exception_class_path": "builtins.RuntimeError", "traceback": "Traceback...\nRuntimeError: flaky\n"}


def phase(**fields):
    defaults = dict(task_path="t.x", enqueued_at=NOW, available_at=NOW, max_attempts=3, attempts=0, status="READY")
    record = TaskRecord.objects.create(**{**defaults, **fields})
    return phase_of(TaskRecord.objects.get(pk=record.pk), NOW)


@pytest.mark.parametrize("fields, label, detail", [
    ({}, "Ready", "Waiting for a worker."),
    ({"available_at": NOW + dt.timedelta(hours=1)}, "Scheduled", "Runs at "),
    ({"attempts": 1, "errors": [RAISED]}, "Queued to retry", "Attempt 2 of 3 waits for a worker."),
    ({"attempts": 1, "errors": [RAISED], "available_at": NOW + dt.timedelta(seconds=2)}, "Waiting to retry",
     "Attempt 2 of 3 starts at "),
    ({"attempts": 1, "errors": [LOST]}, "Queued to retry", "Attempt 2 of 3 waits for a worker after a lost worker."),
    ({"status": "RUNNING", "attempts": 2, "claimed_by": "w1", "errors": [LOST]}, "Running",
     "Attempt 2 of 3 on w1 after a lost worker."),
    ({"status": "RUNNING", "attempts": 4, "claimed_by": "w1", "errors": [LOST] * 3}, "Running",
     "Attempt 4 (an extra run after a lost worker) on w1 after a lost worker."),
    ({"status": "RUNNING", "attempts": 1, "claimed_by": "w1", "cancel_requested": True}, "Stopping",
     "Cancel requested: w1 stops attempt 1 and records it as cancelled."),
    ({"status": "SUCCESSFUL", "attempts": 3}, "Successful", "On attempt 3 of 3."),
    ({"status": "FAILED", "attempts": 1, "errors": [RAISED]}, "Failed", "After 1 attempt: RuntimeError: flaky."),
    ({"status": "CANCELLED", "cancel_requested": True, "attempts": 1,
      "errors": [{"exception_class_path": "loom.exceptions.TaskCancelled",
                  "traceback": "loom.exceptions.TaskCancelled: Cancelled by an operator while running.\n"}]},
     "Cancelled", "Cancelled by an operator while running."),
    ({"status": "CANCELLED", "errors": [{"exception_class_path": "loom.exceptions.TaskCancelled",
                                         "traceback": CANCELLED_BEFORE_RUN}]}, "Cancelled", "Cancelled before it ran."),
    ({"status": "CANCELLED", "attempts": 1, "errors": [RAISED, {"exception_class_path": "loom.exceptions.TaskCancelled",
                                                                 "traceback": CANCELLED_BEFORE_RUN}]},
     "Cancelled", "Cancelled while waiting for attempt 2."),
])
def test_each_state_has_one_wording(fields, label, detail):
    shown = phase(**fields)
    assert shown.label == label and shown.detail.startswith(detail), shown


def test_a_final_task_never_says_it_is_being_cancelled():
    assert phase(status="CANCELLED", cancel_requested=True, attempts=1).label == "Cancelled"
    assert phase(status="SUCCESSFUL", cancel_requested=True, attempts=1).label == "Successful"
