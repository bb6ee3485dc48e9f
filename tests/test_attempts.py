"""A task's attempts as a history (``loom.attempts``), from rows written here through the ORM: rows
whose errors carry the attempt keys, and older rows whose errors carry Django's two keys only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from loom.attempts import current_progress, error_line, history
from loom.models import TaskRecord
from loom.store.operations import CANCELLED_BEFORE_RUN

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def entry(cls: str, message: str, attempt: int | None = None, worker: str | None = None,
          start: float | None = None, end: float | None = None, keys: bool = True) -> dict:
    error = {"exception_class_path": cls,
             "traceback": "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                          f"{cls.removeprefix('builtins.')}: {message}\n"}
    if keys:
        error.update(attempt=attempt, worker_id=worker, started_at=at(start).isoformat() if start is not None else None,
                     finished_at=at(end).isoformat() if end is not None else None)
    return error


def row(**fields) -> TaskRecord:
    defaults = dict(task_path="tests.app.tasks.fail", enqueued_at=T0, available_at=T0, max_attempts=3)
    return TaskRecord.objects.create(**{**defaults, **fields})


def test_a_task_that_succeeded_on_its_third_attempt():
    record = row(status="SUCCESSFUL", attempts=3, started_at=at(0), last_attempted_at=at(67), finished_at=at(67.005),
                 worker_ids=["w1", "w1", "w2"],
                 errors=[entry("builtins.RuntimeError", "flaky 1", 1, "w1", 0, 0.004),
                         entry("loom.exceptions.WorkerLost", "worker gone", 2, "w1", 1.0, 31.0)])
    shown = history(record)
    assert [(a.number, a.outcome, a.worker_id) for a in shown] == [
        (1, "Failed", "w1"), (2, "Worker lost", "w1"), (3, "Successful", "w2")]
    assert shown[0].error == "RuntimeError: flaky 1" and shown[0].duration == pytest.approx(0.004)
    assert shown[1].waited == pytest.approx(0.996)
    # The row's started_at is attempt 1's start: the last attempt's duration is its own.
    assert shown[2].duration == pytest.approx(0.005) and shown[2].waited == pytest.approx(36.0)


def test_running_stopping_and_waiting_attempts_come_from_the_row():
    running = row(status="RUNNING", attempts=2, last_attempted_at=at(10), claimed_by="w9", worker_ids=["w1", "w9"],
                  errors=[entry("builtins.ValueError", "bad", 1, "w1", 0, 1)])
    last = [(a.number, a.outcome, a.worker_id, a.started_at) for a in history(running)][-1]
    assert last == (2, "Running", "w9", at(10))
    running.cancel_requested = True
    assert history(running)[-1].outcome == "Stopping" and not history(running)[-1].ended
    waiting = row(status="READY", attempts=1, available_at=at(3), worker_ids=["w1"],
                  errors=[entry("builtins.ValueError", "bad", 1, "w1", 0, 1)])
    assert [(a.number, a.outcome, a.due_at) for a in history(waiting)][-1] == (2, "Waiting", at(3))


def test_rows_from_before_the_attempt_keys_still_read_as_a_history():
    record = row(status="FAILED", attempts=2, last_attempted_at=at(5), finished_at=at(6), worker_ids=["w1", "w2"],
                 errors=[entry("builtins.KeyError", "'a'", keys=False), entry("builtins.KeyError", "'b'", keys=False)])
    first, last = history(record)
    assert (first.number, first.worker_id, first.started_at, first.error) == (1, "w1", None, "KeyError: 'a'")
    assert (last.number, last.worker_id, last.started_at, last.finished_at) == (2, "w2", at(5), at(6))
    assert last.duration == 1.0


def test_a_cancel_before_a_run_is_not_an_attempt():
    never = row(status="CANCELLED", attempts=0, finished_at=at(1),
                errors=[{"exception_class_path": "loom.exceptions.TaskCancelled", "traceback": CANCELLED_BEFORE_RUN}])
    assert [(a.number, a.outcome) for a in history(never)] == [(None, "Cancelled")]
    # Retried by an operator afterwards and now running: the cancel is still no attempt.
    never.status, never.attempts, never.last_attempted_at, never.worker_ids = "RUNNING", 1, at(2), ["w1"]
    assert [(a.number, a.outcome) for a in history(never)] == [(None, "Cancelled"), (1, "Running")]
    keyed = row(status="CANCELLED", attempts=1, errors=[
        entry("builtins.ValueError", "x", 1, "w1", 0, 1),
        entry("loom.exceptions.TaskCancelled", "by an operator", None)])
    assert [(a.number, a.outcome) for a in history(keyed)] == [(1, "Failed"), (None, "Cancelled")]


def test_times_written_by_sqlite_itself_are_utc():
    record = row(status="FAILED", attempts=1, finished_at=at(2), errors=[
        dict(entry("builtins.ValueError", "x", 1, "w1"), started_at=at(0).strftime("%Y-%m-%dT%H:%M:%S.%f"),
             finished_at=at(2).isoformat())])
    assert history(record)[0].duration == 2.0


def test_error_line_is_class_and_message():
    assert error_line(entry("demo.tasks.Flaky", "try again")) == "demo.tasks.Flaky: try again"
    assert error_line({"exception_class_path": "x.Y", "traceback": ""}) == "x.Y"
    assert error_line({"exception_class_path": "x.Y", "traceback": "x.Y: one\nmore\n\n"}) == "more"


def test_progress_belongs_to_the_current_attempt_only():
    record = row(status="RUNNING", attempts=2, last_attempted_at=at(10),
                 progress_current=1, progress_total=2, progress_at=at(9))
    assert current_progress(record) is None  # reported by attempt 1
    record.progress_at = at(11)
    assert current_progress(record).percent == 50
    record.status = "READY"
    assert current_progress(record) is None  # waiting for its next attempt
