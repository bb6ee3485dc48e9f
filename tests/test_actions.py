"""Operator actions (``loom.actions`` over ``loom.store.operations``): what each does to each state,
what it reports, its events, and that its writes hold on startproject's SQLite under a busy worker."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from django.db import OperationalError, connection
from loom.compat import task_backends
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loom import events
from loom.actions import applies, perform
from loom.models import TaskRecord
from loom.store import operations
from loom.testing import run_tasks
from tests.app import progress_tasks as pt
from tests.app import tasks
from tests.conftest import DB, ROOT

pytestmark = pytest.mark.usefixtures("memory_events")

MISSING = "01920000-0000-7000-8000-000000000000"


@pytest.fixture
def backend():
    return task_backends["default"]


def running(result) -> None:
    TaskRecord.objects.filter(pk=result.id).update(status="RUNNING", claimed_by="w1", attempts=1)


@pytest.mark.django_db
def test_each_action_reports_what_it_changed_and_why_not(backend):
    failed = tasks.fail.enqueue("x")
    run_tasks()
    ready, busy = tasks.add.enqueue(1, 1), pt.count.enqueue(1)
    running(busy)

    report = perform(backend, "retry", [failed.id, ready.id, MISSING])
    assert (report.changed, report.asked) == (1, 3)
    assert report.refused == {ready.id: "is READY, cannot retry (needs CANCELLED or FAILED)", MISSING: "no such task"}
    assert TaskRecord.objects.get(pk=failed.id).status == "READY"

    with events.subscribe(events.ALL_TASKS) as seen:
        report = perform(backend, "cancel", [ready.id, busy.id])
        kinds = [(e.payload["task_id"], e.type) for e in iter(lambda: seen.get(0), None)]
    assert (report.changed, report.stopping, report.refused) == (2, 1, {})
    assert kinds == [(ready.id, "cancelled")]  # the running one is cancelled by its worker, later
    assert TaskRecord.objects.get(pk=ready.id).status == "CANCELLED"
    assert TaskRecord.objects.get(pk=busy.id).cancel_requested
    assert perform(backend, "cancel", [busy.id]).refused == {busy.id: "is already stopping (cancel requested)"}

    report = perform(backend, "delete", [ready.id, busy.id])
    assert report.changed == 1 and "is RUNNING, cannot delete" in report.refused[busy.id]
    assert not TaskRecord.objects.filter(pk=ready.id).exists()
    with pytest.raises(ValueError, match="Unknown action 'explode'; use one of retry, cancel, delete"):
        perform(backend, "explode", [busy.id])


def test_applies_matches_what_perform_changes():
    assert applies("retry", "FAILED") and applies("retry", "CANCELLED") and not applies("retry", "SUCCESSFUL")
    assert applies("cancel", "RUNNING") and not applies("cancel", "RUNNING", cancel_requested=True)
    assert not applies("delete", "RUNNING") and applies("delete", "SUCCESSFUL")


@pytest.mark.django_db
def test_retry_clears_the_last_attempts_progress_and_allows_one_more(backend):
    failed = pt.broken.enqueue()
    run_tasks()
    TaskRecord.objects.filter(pk=failed.id).update(progress_current=1, progress_total=2, progress_message="half")
    perform(backend, "retry", [failed.id])
    row = TaskRecord.objects.get(pk=failed.id)
    assert (row.status, row.attempts, row.max_attempts) == ("READY", 1, 2)
    assert (row.progress_current, row.progress_total, row.progress_message) == (None, None, "")


@pytest.mark.django_db
def test_each_write_is_one_statement_with_no_read_before_it(backend):
    """A read then a write in one transaction is what SQLite refuses under a concurrent writer."""
    ready = tasks.add.enqueue(1, 1)
    store, now = backend.store, timezone.now()
    for write, kinds in [(lambda: store.cancel([ready.id], now), ["UPDATE", "UPDATE"]),
                         (lambda: store.retry([ready.id], now), ["UPDATE"]),
                         (lambda: store.delete([ready.id]), ["DELETE"])]:
        with CaptureQueriesContext(connection) as queries:
            write()
        statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
        # PostgreSQL's retry reads the queues to wake beforehand, outside any transaction.
        # Inside a transaction (this test's) a retry runs in a savepoint: a refused key must not
        # spoil the caller's transaction.
        # PostgreSQL's retry first moves archived tasks back into loom_task (loom.store.archive):
        # one statement of its own (WITH ... DELETE ... INSERT).
        statements = [s for s in statements if s not in ("SAVEPOINT", "RELEASE")]
        assert [s for s in statements if s not in ("SELECT", "WITH") or DB != "postgresql"] == kinds, statements
        assert not any(s in ("BEGIN", "SAVEPOINT") for s in statements), statements
    error = TaskRecord.objects.filter(pk=ready.id).first()
    assert error is None  # deleted by the last write


@pytest.mark.django_db
def test_cancel_appends_its_reason_without_losing_earlier_errors(backend):
    flaky = tasks.fail.using(run_after=timezone.now()).enqueue("first")
    run_tasks()
    perform(backend, "retry", [flaky.id])
    perform(backend, "cancel", [flaky.id])
    errors = TaskRecord.objects.get(pk=flaky.id).errors
    assert [e["exception_class_path"] for e in errors] == ["builtins.ValueError", "loom.exceptions.TaskCancelled"]
    assert errors[1]["traceback"] == operations.CANCELLED_BEFORE_RUN


@pytest.mark.skipif(DB != "sqlite", reason="SQLite's locking; this run is on " + DB)
@pytest.mark.django_db(transaction=True)
def test_a_lock_held_past_the_busy_timeout_is_retried_with_backoff_and_bounded(backend):
    ready = [tasks.add.enqueue(i, i).id for i in range(2)]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 50")  # as if a writer held the lock past the 5 s default
    holder = sqlite3.connect(connection.settings_dict["NAME"], timeout=5, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.4, holder.execute, ["COMMIT"])  # the other writer finishes its work
        release.start()
        started = time.monotonic()
        assert backend.store.cancel([ready[0]], timezone.now()) == 1
        assert time.monotonic() - started >= 0.3
        release.join()

        holder.execute("BEGIN IMMEDIATE")  # and now a writer that never lets go
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            backend.store.cancel([ready[1]], timezone.now())
        waited = time.monotonic() - started
        backoff = sum(operations.LOCK_BACKOFF * 2 ** i for i in range(operations.LOCK_ATTEMPTS - 1))
        assert backoff <= waited < backoff + 3
    finally:
        if holder.in_transaction:
            holder.execute("COMMIT")
        holder.close()
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 20000")
    assert TaskRecord.objects.get(pk=ready[1]).status == "READY"


@pytest.mark.skipif(DB != "sqlite", reason="startproject's database is SQLite; this run is on " + DB)
def test_operator_actions_on_startproject_sqlite_while_a_worker_writes(tmp_path, start_worker):
    """Dashboard, CLI and admin actions in a loop on default settings, a real worker draining tasks."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.plain_settings",
           "LOOM_PLAIN_DB": str(tmp_path / "db.sqlite3"),
           "PYTHONPATH": str(ROOT)}

    def django(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    django("-m", "django", "migrate", "-v", "0")
    # Tasks that write a row each (more writes than no-ops, and slow enough to outlast the actions).
    django("-m", "django", "shell", "-c", "from loom.compat import task_backends; from tests.app import tasks; "
           "task_backends['default'].enqueue_many(tasks.chaos, [(('load', 0), {})] * 40000)")
    worker = start_worker("--processes", "0", "--threads", "4",
                          env={k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "LOOM_PLAIN_DB")})
    worker.wait_started()
    report = json.loads(django("-m", "tests.operator_load", "8").splitlines()[-1])
    assert worker.proc.poll() is None, "the worker stopped early: " + "".join(worker.output)
    left = django("-m", "django", "shell", "-c", "from loom.models import TaskRecord; "
                  "print(TaskRecord.objects.filter(task_path='tests.app.tasks.chaos', status='READY').count())")
    assert int(left.split()[-1]) > 0, "the worker finished its load before the actions ended: the test proved nothing"
    assert report["rounds"] >= 5 and report["errors"] == [], report
