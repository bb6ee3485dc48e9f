"""DatabaseBackend against Django's tasks contract (run on every database, and on Django 6.0)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from loom.backends import DatabaseBackend
from loom.compat import (
    LOGGER,
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from loom.exceptions import InvalidTaskArguments
from loom.models import TaskRecord
from loom.testing import run_tasks
from tests.app import tasks
from tests.app.models import Note

pytestmark = [pytest.mark.contract, pytest.mark.django_db]


@pytest.fixture
def received():
    """Collect (signal name, sender, status, exc_info present) for every task signal."""
    import sys

    seen = []

    def make(name):
        def receiver(sender, task_result, **kwargs):
            seen.append((name, sender, task_result.status, sys.exc_info()[0] is not None, task_result))
        return receiver

    receivers = {sig: make(name) for sig, name in
                 [(task_enqueued, "enqueued"), (task_started, "started"), (task_finished, "finished")]}
    for sig, receiver in receivers.items():
        sig.connect(receiver)
    yield seen
    for sig, receiver in receivers.items():
        sig.disconnect(receiver)


def test_capabilities():
    backend = task_backends["default"]
    assert isinstance(backend, DatabaseBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_enqueue_returns_ready_result_and_stores_row():
    result = tasks.echo.enqueue(1, (2, 3), b"x", key={"a": (1,)})
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at is not None and result.started_at is None and result.finished_at is None
    assert result.args == [1, [2, 3], "x"] and result.kwargs == {"key": {"a": [1]}}
    assert result.backend == "default" and result.worker_ids == [] and result.attempts == 0
    assert result.task is tasks.echo
    row = TaskRecord.objects.get(pk=result.id)
    assert row.task_path == "tests.app.tasks.echo" and row.status == "READY"


def test_get_result_round_trip_before_run():
    result = tasks.add.enqueue(1, 2)
    fetched = tasks.add.get_result(result.id)
    assert fetched.id == result.id and fetched.status == TaskResultStatus.READY
    assert fetched.args == [1, 2] and fetched.enqueued_at == result.enqueued_at
    with pytest.raises(ValueError):
        fetched.return_value


@pytest.mark.parametrize("bad", ["nope", "", "00000000-0000-0000-0000-000000000000", "x" * 300, "1"])
def test_unknown_or_malformed_id_raises_does_not_exist(bad):
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(bad)
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(bad)


def test_get_result_of_other_task_is_mismatch():
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        tasks.noop.get_result(result.id)


def test_get_result_rebuilds_task_overrides():
    when = timezone.now() + timedelta(days=1)
    custom = tasks.add.using(priority=-7, queue_name="other", run_after=when)
    result = custom.enqueue(1, 2)
    fetched = tasks.add.get_result(result.id)  # never a TaskResultMismatch
    assert fetched.task.priority == -7 and fetched.task.queue_name == "other"
    assert fetched.task.run_after == when and fetched.task.func is tasks.add.func
    assert custom.get_result(result.id).id == result.id


@pytest.mark.django_db(transaction=True)  # task_enqueued waits for a real commit
def test_success_fills_every_field(received):
    result = tasks.add.enqueue(2, 3)
    assert run_tasks() == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.started_at and result.finished_at and result.last_attempted_at
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.attempts == 1 and len(result.worker_ids) == 1 and result.errors == []
    names = [(name, sender, status) for name, sender, status, _, _ in received]
    assert names == [
        ("enqueued", DatabaseBackend, TaskResultStatus.READY),
        ("started", DatabaseBackend, TaskResultStatus.RUNNING),
        ("finished", DatabaseBackend, TaskResultStatus.SUCCESSFUL),
    ]


def test_return_value_round_trips_as_json():
    result = tasks.report.enqueue(3)
    run_tasks()
    assert tasks.report.get_result(result.id).return_value == {"n": 3, "items": [0, 1, 2]}
    none = tasks.noop.enqueue()
    run_tasks()
    none.refresh()
    assert none.status == TaskResultStatus.SUCCESSFUL and none.return_value is None


# Values no database's JSON type holds as they are (NUL, a lone surrogate), one jsonb would
# rewrite (1e16 -> an integer), and ordinary non-ASCII text.
AWKWARD = ["a\x00b", "\ud800 lone", {"x": 1e16, "y": -0.0, "z": [1.5, "é", "\U0001f600"]}, "\\u0000"]


def test_awkward_values_round_trip_as_immediate_backend_returns_them():
    from loom.compat import normalize_json, task_backends

    result = tasks.echo.enqueue(*AWKWARD, key=AWKWARD[2])
    stored = tasks.echo.get_result(result.id)
    assert stored.args == AWKWARD and stored.kwargs == {"key": AWKWARD[2]}
    run_tasks()
    value = tasks.echo.get_result(result.id).return_value
    expected = normalize_json({"args": AWKWARD, "kwargs": {"key": AWKWARD[2]}})  # what ImmediateBackend returns
    assert value == expected
    assert isinstance(value["args"][2]["x"], float) and str(value["args"][2]["y"]) == "-0.0"
    assert task_backends["default"].get_result(result.id).args[0] == "a\x00b"


def test_failure_records_error_and_sends_finished_inside_except(received, caplog):
    result = tasks.fail.enqueue("kaput")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        run_tasks()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.finished_at is not None
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError" and error.exception_class is ValueError
    assert "ValueError: kaput" in error.traceback and "def fail" not in error.exception_class_path
    finished = [r for r in received if r[0] == "finished"]
    assert finished[0][2] == TaskResultStatus.FAILED and finished[0][3] is True  # exc_info present
    assert any(rec.exc_info for rec in caplog.records)  # Django's receiver logged the traceback
    with pytest.raises(ValueError):
        result.return_value


def test_system_exit_fails_the_task():
    result = tasks.exit_task.enqueue()
    run_tasks()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.SystemExit"


def test_non_json_return_value_fails_with_type_error():
    result = tasks.bad_return.enqueue()
    run_tasks()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.TypeError"


def test_context_attempt_is_one_on_first_run():
    result = tasks.with_context.enqueue("v")
    run_tasks()
    value = tasks.with_context.get_result(result.id).return_value
    assert value["attempt"] == 1 and value["id"] == result.id and value["value"] == "v"
    assert len(value["worker_ids"]) == 1


def test_async_task_runs_and_fails():
    ok = tasks.async_add.enqueue(20, 22)
    bad = tasks.async_fail.enqueue()
    run_tasks()
    ok.refresh(), bad.refresh()
    assert ok.return_value == 42
    assert bad.status == TaskResultStatus.FAILED
    assert bad.errors[0].exception_class_path == "builtins.RuntimeError"


def test_aenqueue_and_aget_result():
    from asgiref.sync import async_to_sync

    async def scenario():
        result = await tasks.add.aenqueue(1, 1)
        fetched = await tasks.add.aget_result(result.id)
        assert fetched.id == result.id and fetched.status == TaskResultStatus.READY
        await result.arefresh()
        with pytest.raises(TaskResultDoesNotExist):
            await tasks.add.aget_result("missing")

    async_to_sync(scenario)()


def test_priority_then_age_order():
    low = tasks.record_run.using(priority=-10).enqueue("low")
    high = tasks.record_run.using(priority=10).enqueue("high")
    mid1 = tasks.record_run.enqueue("mid1")
    mid2 = tasks.record_run.enqueue("mid2")
    run_tasks()
    from tests.app.models import Run

    assert list(Run.objects.order_by("id").values_list("key", flat=True)) == ["high", "mid1", "mid2", "low"]
    assert all(tasks.record_run.get_result(r.id).status == "SUCCESSFUL" for r in (low, high, mid1, mid2))


def test_run_after_in_future_waits_for_its_time():
    later = timezone.now() + timedelta(minutes=5)
    result = tasks.add.using(run_after=later).enqueue(1, 1)
    assert run_tasks() == 0
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY
    assert run_tasks(clock=lambda: later + timedelta(seconds=1)) == 1
    assert tasks.add.get_result(result.id).return_value == 2


# -- bad input: a clear error at enqueue, nothing stored ---------------------------------------

def test_non_json_argument_names_the_argument():
    with pytest.raises(InvalidTaskArguments, match="argument 1") as info:
        tasks.echo.enqueue(1, object())
    assert isinstance(info.value, TypeError)
    with pytest.raises(InvalidTaskArguments, match="keyword argument 'when'"):
        tasks.echo.enqueue(when=timezone.now())
    with pytest.raises(InvalidTaskArguments):
        tasks.echo.enqueue(float("nan"))
    assert TaskRecord.objects.count() == 0


def test_unknown_queue_is_refused():
    with pytest.raises(InvalidTask, match="Queue 'nope'"):
        tasks.add.using(queue_name="nope").enqueue(1, 2)
    assert TaskRecord.objects.count() == 0


@pytest.mark.parametrize("priority", [101, -101, 1.5])
def test_priority_out_of_range_is_refused(priority):
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=priority).enqueue(1, 2)
    assert TaskRecord.objects.count() == 0


def test_plain_function_is_refused():
    backend = task_backends["default"]
    with pytest.raises(InvalidTask, match="not a django.tasks.Task"):
        backend.enqueue(tasks.plain_function, [1], {})
    assert TaskRecord.objects.count() == 0


def test_naive_run_after_is_refused():
    naive = timezone.now().replace(tzinfo=None)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=naive).enqueue(1, 2)
    assert TaskRecord.objects.count() == 0


def test_validate_task_runs_again_at_enqueue():
    import dataclasses

    # Bypass __post_init__ to get a Task that would not validate, as a stale pickle could.
    bad = object.__new__(type(tasks.add))
    for f in dataclasses.fields(tasks.add):
        object.__setattr__(bad, f.name, getattr(tasks.add, f.name))
    object.__setattr__(bad, "queue_name", "unknown-queue")
    with pytest.raises(InvalidTask):
        bad.enqueue(1, 2)
    assert TaskRecord.objects.count() == 0


# -- transactions -------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_enqueue_commits_with_user_data(received):
    with transaction.atomic():
        Note.objects.create(text="together")
        result = tasks.add.enqueue(1, 2)
        assert [r for r in received if r[0] == "enqueued"] == []  # not before commit
    assert [r[0] for r in received] == ["enqueued"]
    assert TaskRecord.objects.filter(pk=result.id).exists() and Note.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_rolled_back_enqueue_leaves_nothing_and_never_runs(received):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with transaction.atomic():
            Note.objects.create(text="gone")
            result = tasks.record_run.enqueue("never")
            raise Boom
    assert received == []
    assert not TaskRecord.objects.filter(pk=result.id).exists() and Note.objects.count() == 0
    assert run_tasks() == 0
    with pytest.raises(TaskResultDoesNotExist):
        tasks.record_run.get_result(result.id)


def test_enqueue_many_inserts_all_in_one_go():
    backend = task_backends["default"]
    results = backend.enqueue_many(tasks.add, [((i, i), {}) for i in range(50)])
    assert len({r.id for r in results}) == 50
    assert run_tasks() == 50
    assert sorted(tasks.add.get_result(r.id).return_value for r in results) == [2 * i for i in range(50)]
    with pytest.raises(InvalidTaskArguments):
        backend.enqueue_many(tasks.add, [((1, 2), {}), ((object(), 1), {})])
    assert TaskRecord.objects.count() == 50


@pytest.mark.django_db(transaction=True)
def test_enqueue_many_is_atomic_with_the_callers_transaction():
    backend = task_backends["default"]
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            backend.enqueue_many(tasks.add, [((i, i), {}) for i in range(20)])
            raise RuntimeError
    assert TaskRecord.objects.count() == 0
    with transaction.atomic():
        backend.enqueue_many(tasks.add, [((i, i), {}) for i in range(20)])
    assert TaskRecord.objects.count() == 20


@pytest.mark.django_db(transaction=True)
def test_postgresql_wakes_listeners_on_commit_only():
    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's; other databases are covered by the worker tests")
    listener = connections.create_connection("default")
    listener.ensure_connection()
    raw = listener.connection
    raw.autocommit = True
    raw.execute("LISTEN loom")
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            task_backends["default"].enqueue_many(tasks.add, [((1, 1), {})] * 3)
            raise RuntimeError
        assert list(raw.notifies(timeout=0.3)) == []  # rolled back: nobody woken
        task_backends["default"].enqueue_many(tasks.add.using(queue_name="reports"), [((1, 1), {})] * 3)
        tasks.add.enqueue(1, 1)
        payloads = sorted({n.payload for n in raw.notifies(timeout=1.0, stop_after=2)})
        assert payloads == ["default", "reports"]
    finally:
        listener.close()
