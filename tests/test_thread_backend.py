"""ThreadBackend: after commit, Django's contract (results, signals, errors), priority, bounds,
result expiry, connection hygiene, and draining at interpreter exit (in a real subprocess).

Tasks come from tests.app.tasks / parallel_tasks and move to the ``threads`` alias with
``.using(backend=...)``; ``backend.wait()`` is the event tests block on.
"""

import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from loom.backends import ThreadBackend
from loom.compat import (
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
from tests.app import parallel_tasks as pt
from tests.app import tasks

ALIAS = "threads"
ROOT = Path(__file__).resolve().parent.parent
GATE_TIMEOUT = pt.GATE_TIMEOUT


@contextmanager
def thread_backend(**options):
    backends = {**settings.TASKS, ALIAS: {"BACKEND": "loom.backends.ThreadBackend", "OPTIONS": options}}
    with override_settings(TASKS=backends):
        backend = task_backends[ALIAS]
        try:
            yield backend
        finally:
            for event in pt.GATES.values():
                event.set()
            assert backend.wait(GATE_TIMEOUT), "tasks still running when the test ended"


@pytest.fixture
def backend():
    with thread_backend() as backend:
        yield backend


@pytest.fixture(autouse=True)
def clean_state():
    yield
    pt.ORDER.clear()
    pt.GATES.clear()
    pt.WRAPPERS.clear()


@pytest.fixture
def signals():
    """(signal name, sender, status, whether exc_info was set) for each signal sent."""
    sent = []

    def recorder(name):
        def receive(sender, task_result, **kwargs):
            sent.append((name, sender, task_result.status, sys.exc_info()[0] is not None))
        return receive

    receivers = [(signal, recorder(name)) for signal, name in
                 [(task_enqueued, "enqueued"), (task_started, "started"), (task_finished, "finished")]]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=False)
    yield sent
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def on(backend, task, **changes):
    return task.using(backend=backend.alias, **changes)


# -- after commit ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_task_runs_after_commit_and_sees_what_its_transaction_wrote(backend):
    with transaction.atomic():
        pt.add_note("written-with-the-task")
        result = on(backend, pt.note_exists).enqueue("written-with-the-task")
        assert backend.wait(timeout=0), "released before the transaction committed"
        assert backend.get_result(result.id).status == TaskResultStatus.READY
    assert backend.wait(GATE_TIMEOUT)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value is True
    assert result.worker_ids == [backend.runtime.worker_id] and result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_enqueue_never_runs(backend):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        result = on(backend, pt.record_order).enqueue("rolled-back")
        1 / 0
    assert backend.wait(timeout=0)
    assert pt.ORDER == []
    assert backend.get_result(result.id).status == TaskResultStatus.READY


@pytest.mark.django_db
def test_in_a_testcase_tasks_run_with_captured_on_commit_callbacks(backend, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        on(backend, pt.record_order).enqueue("captured")
    assert len(callbacks) == 1
    assert backend.wait(GATE_TIMEOUT) and pt.ORDER == ["captured"]


# -- Django's contract ----------------------------------------------------------------------


def test_signals_are_sent_with_the_backend_class(backend, signals):
    on(backend, tasks.add).enqueue(1, 2)
    on(backend, tasks.fail).enqueue()
    assert backend.wait(GATE_TIMEOUT)
    assert {sender for _, sender, _, _ in signals} == {ThreadBackend}
    names = [(name, status, exc) for name, _, status, exc in signals]
    assert names.count(("enqueued", TaskResultStatus.READY, False)) == 2
    assert names.count(("started", TaskResultStatus.RUNNING, False)) == 2
    assert ("finished", TaskResultStatus.SUCCESSFUL, False) in names
    assert ("finished", TaskResultStatus.FAILED, True) in names  # sent from the except block


@pytest.mark.parametrize("task, arguments, error_class", [
    (tasks.fail, (), "builtins.ValueError"),
    (tasks.bad_return, (), "builtins.TypeError"),
    (tasks.exit_task, (), "builtins.SystemExit"),
    (pt.interrupt, (), "builtins.KeyboardInterrupt"),
    (tasks.async_fail, (), "builtins.RuntimeError"),
])
def test_failures_are_recorded_and_the_thread_survives(backend, task, arguments, error_class):
    failed = on(backend, task).enqueue(*arguments)
    after = on(backend, tasks.add).enqueue(1, 1)
    assert backend.wait(GATE_TIMEOUT)
    failed.refresh()
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == error_class
    assert error_class.removeprefix("builtins.") in failed.errors[0].traceback
    with pytest.raises(ValueError, match="failed"):
        failed.return_value
    assert backend.get_result(after.id).return_value == 2


def test_async_tasks_and_context_run(backend):
    added = on(backend, tasks.async_add).enqueue(4, 5)
    context = on(backend, tasks.with_context).enqueue("v")
    assert backend.wait(GATE_TIMEOUT)
    assert backend.get_result(added.id).return_value == 9
    value = backend.get_result(context.id).return_value
    assert value["attempt"] == 1 and value["id"] == context.id and value["value"] == "v"


def test_arguments_round_trip_as_json_and_bad_ones_are_refused(backend):
    echoed = on(backend, tasks.echo).enqueue((1, 2), key={"a": (3,)})
    assert echoed.args == [[1, 2]]
    with pytest.raises(InvalidTaskArguments, match="argument 0"):
        on(backend, tasks.echo).enqueue({1, 2})
    assert backend.wait(GATE_TIMEOUT)
    assert backend.get_result(echoed.id).return_value == {"args": [[1, 2]], "kwargs": {"key": {"a": [3]}}}


def test_what_it_cannot_do_is_refused_at_validation(backend):
    with pytest.raises(InvalidTask, match="run_after"):
        on(backend, tasks.add, run_after=timezone.now())
    with pytest.raises(InvalidTask, match="max_attempts"):
        replace(tasks.add, backend=ALIAS, max_attempts=3)  # no decorator extras: Django 6.0 runs this file too
    with pytest.raises(InvalidTask, match="timeout"):
        replace(tasks.add, backend=ALIAS, timeout=5)


def test_get_result_from_any_thread_and_for_the_right_task_only(backend):
    result = on(backend, tasks.add).enqueue(2, 2)
    assert backend.wait(GATE_TIMEOUT)
    seen = []
    reader = threading.Thread(target=lambda: seen.append(task_backends[ALIAS].get_result(result.id)))
    reader.start()
    reader.join()
    assert seen[0].return_value == 4 and seen[0] is not result
    assert on(backend, tasks.add).get_result(result.id).return_value == 4
    with pytest.raises(TaskResultMismatch):
        on(backend, tasks.noop).get_result(result.id)
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result("no-such-id")


def test_aenqueue_and_aget_result(backend):
    async def scenario():
        result = await on(backend, tasks.add).aenqueue(3, 4)
        return result.id

    result_id = async_to_sync(scenario)()
    assert backend.wait(GATE_TIMEOUT)
    assert async_to_sync(backend.aget_result)(result_id).return_value == 7


# -- priority, bounds, results --------------------------------------------------------------


def test_queued_tasks_start_highest_priority_first():
    with thread_backend(THREADS=1) as backend:
        on(backend, pt.wait_for_gate).enqueue("release", started="blocking")
        assert pt.gate("blocking").wait(GATE_TIMEOUT)
        for key, priority in [("low", -5), ("high", 50), ("mid", 0), ("high-later", 50)]:
            on(backend, pt.record_order, priority=priority).enqueue(key)
        pt.gate("release").set()
        assert backend.wait(GATE_TIMEOUT)
    assert pt.ORDER == ["high", "high-later", "mid", "low"]


def test_the_pool_never_grows_past_its_threads():
    with thread_backend(THREADS=2) as backend:
        for i in range(5):
            on(backend, pt.wait_for_gate).enqueue("release", started=f"started-{i}")
        assert pt.gate("started-0").wait(GATE_TIMEOUT) and pt.gate("started-1").wait(GATE_TIMEOUT)
        assert len(backend.runtime.executor.threads) == 2
        assert not any(pt.gate(f"started-{i}").is_set() for i in range(2, 5))
        pt.gate("release").set()
        assert backend.wait(GATE_TIMEOUT)
        assert len(backend.runtime.executor.threads) == 2


def test_finished_results_are_bounded_and_expire():
    with thread_backend(MAX_RESULTS=2, RESULT_TTL=60) as backend:
        now = [1000.0]
        backend.runtime.clock = lambda: now[0]
        try:
            ids = []
            for i in range(3):
                ids.append(on(backend, tasks.add).enqueue(i, i).id)
                assert backend.wait(GATE_TIMEOUT)
            with pytest.raises(TaskResultDoesNotExist):
                backend.get_result(ids[0])  # the oldest of three, over MAX_RESULTS
            assert backend.get_result(ids[2]).return_value == 4
            now[0] += 61
            with pytest.raises(TaskResultDoesNotExist):
                backend.get_result(ids[2])
        finally:
            backend.runtime.clock = time.monotonic


@pytest.mark.parametrize("options, message", [
    ({"THREDS": 2}, "THREDS"), ({"THREADS": 0}, "THREADS"), ({"GRACE": -1}, "GRACE"),
    ({"MAX_RESULTS": True}, "MAX_RESULTS"), ({"DATABASE": ""}, "DATABASE"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        ThreadBackend(ALIAS, {"OPTIONS": options})


# -- connections ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_each_task_closes_the_connections_it_opened(backend):
    before = pt.server_connections() if connection.vendor == "postgresql" else None
    for _ in range(3):
        on(backend, pt.use_connection).enqueue()
    assert backend.wait(GATE_TIMEOUT)
    assert len(pt.WRAPPERS) == 3
    assert all(wrapper.connection is None for wrapper in pt.WRAPPERS)
    if before is not None:
        # The server drops a closed connection's backend asynchronously: poll it, with a deadline.
        deadline = time.monotonic() + GATE_TIMEOUT
        while (now := pt.server_connections()) > before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert now == before


# -- interpreter exit -----------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import django
    from django.conf import settings

    settings.configure(
        TASKS={"default": {"BACKEND": "loom.backends.ThreadBackend",
                           "OPTIONS": {"GRACE": float(sys.argv[3])}}},
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()
    from loom.compat import task

    started = threading.Event()

    @task
    def slow(path, seconds):
        started.set()
        time.sleep(seconds)
        with open(path, "w") as out:
            out.write("done")

    slow.enqueue(sys.argv[1], float(sys.argv[2]))
    assert started.wait(10)
    # The main thread ends here, with the task still running.
""")


def run_exit_script(tmp_path, seconds, grace):
    marker = tmp_path / "done.txt"
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(marker), str(seconds), str(grace)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    return proc, marker


def test_running_tasks_are_drained_at_exit(tmp_path):
    proc, marker = run_exit_script(tmp_path, seconds=0.5, grace=30)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "done"


def test_tasks_past_the_grace_period_are_abandoned_with_a_warning(tmp_path):
    start = time.monotonic()
    proc, marker = run_exit_script(tmp_path, seconds=60, grace=0.2)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 30
    assert not marker.exists()
    assert "1 task(s) unfinished after the 0.2 s grace period" in proc.stderr
