"""loom.progress: tasks report progress; it is stored (throttled), published, and readable."""

from __future__ import annotations

import pytest

from loom import events, progress
from loom.compat import TaskResultDoesNotExist
from loom.testing import run_tasks
from tests.app import progress_tasks as pt

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_events(settings):
    """Events delivered in-process, so a test reads them as soon as they are published."""
    settings.LOOM_EVENTS = {"BACKEND": "memory"}
    yield
    events.reset()


@pytest.fixture
def no_throttle(monkeypatch):
    monkeypatch.setattr(progress, "DEFAULT_INTERVAL", 0.0)


@pytest.fixture
def slow_throttle(monkeypatch):
    monkeypatch.setattr(progress, "DEFAULT_INTERVAL", 3600.0)


def progress_events(subscription) -> list[dict]:
    found = []
    while (event := subscription.get(0)) is not None:
        if event.type == "progress":
            found.append(event.payload)
    return found


def test_context_reporter_stores_progress_on_the_row():
    result = pt.count.enqueue(4)
    assert progress.get_progress(result) is None  # nothing reported before it runs
    run_tasks()
    shown = progress.get_progress(result)
    assert (shown.current, shown.total, shown.message) == (4, 4, "step 4")
    assert shown.percent == 100 and shown.fraction == 1.0
    assert shown.at is not None
    assert progress.get_progress(result.id) == shown  # by id as well as by TaskResult


def test_module_is_callable_inside_a_task(no_throttle):
    result = pt.count_module_level.enqueue(3)
    run_tasks()
    result.refresh()
    assert result.return_value == 3  # every one of the three calls was stored (returned True)
    assert progress.get_progress(result).message == "item 3"


def test_async_task_reports_with_areport():
    result = pt.async_count.enqueue(3)
    run_tasks()
    shown = progress.get_progress(result)
    assert (shown.current, shown.total, shown.message) == (3, 3, "async 3")


def test_throttle_writes_first_and_final_report_only(slow_throttle):
    subscription = events.subscribe(events.ALL_TASKS)
    try:
        result = pt.count.enqueue(50)
        run_tasks()
        seen = [p["current"] for p in progress_events(subscription) if p["task_id"] == result.id]
    finally:
        subscription.close()
    assert seen == [1, 50]  # 48 reports in between were held back, the end was not
    assert progress.get_progress(result).current == 50


def test_held_back_report_is_stored_when_the_task_finishes(slow_throttle):
    result = pt.unknown_total.enqueue(5)
    run_tasks()
    shown = progress.get_progress(result)
    assert shown.current == 5 and shown.total is None and shown.percent is None


def test_without_throttle_every_report_is_published_in_order(no_throttle):
    subscription = events.subscribe(events.ALL_TASKS)
    try:
        result = pt.count.enqueue(6)
        run_tasks()
        seen = [p["current"] for p in progress_events(subscription) if p["task_id"] == result.id]
    finally:
        subscription.close()
    assert seen == [1, 2, 3, 4, 5, 6]


def test_report_outside_a_task_is_ignored():
    assert progress.report(1, 2, "nothing runs") is False
    assert progress(1, 2) is False


def test_report_for_a_task_that_is_not_running_is_not_stored():
    result = pt.count.enqueue(2)
    assert progress.report(1, 2, task_id=result.id) is False  # READY: the row refuses it
    assert progress.get_progress(result) is None


@pytest.mark.parametrize("args, error, words", [
    ((-1, 10), ValueError, "current must be >= 0"),
    ((1, 0), ValueError, "total must be > 0"),
    (("1", 10), TypeError, "current must be a finite number"),
    ((float("nan"), 10), TypeError, "finite number"),
    ((True, 10), TypeError, "finite number"),
    ((1, 10, 5), TypeError, "message must be a str"),
])
def test_bad_reports_are_clear_errors(args, error, words):
    with pytest.raises(error, match=words):
        progress.report(*args)


def test_get_progress_of_unknown_task_raises():
    with pytest.raises(TaskResultDoesNotExist):
        progress.get_progress("01920000-0000-7000-8000-000000000000")
    with pytest.raises(TaskResultDoesNotExist):
        progress.get_progress("not-a-uuid")
    with pytest.raises(ValueError, match="needs a TaskResult or a task id"):
        progress.get_progress("")


def test_progress_as_dict_is_json_ready():
    from datetime import UTC, datetime

    shown = progress.Progress(3, 4, "x", datetime(2030, 1, 1, tzinfo=UTC))
    assert shown.as_dict() == {"current": 3, "total": 4, "message": "x", "percent": 75,
                               "at": "2030-01-01T00:00:00+00:00"}
    assert progress.Progress(9, 4, "", None).fraction == 1.0  # clamped
