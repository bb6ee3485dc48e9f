"""Dropped database connections, as failovers, poolers and idle reapers drop them.

The worker's own services (fetcher, completer, heartbeat: each labels its connections with
``application_name`` "loom <service>") have their connections terminated with
``pg_terminate_backend`` over and over while tasks drain: nothing is lost, failed or stuck, and a
task ran twice only if one of its runs was lost. A task whose own connection drops mid-body runs
again (within LOST_RETRIES) instead of failing. A connection that died while idle between two
tasks is replaced before the next task's first query.

PostgreSQL and MariaDB (which can kill connections); SQLite has no connection to drop.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from loom.models import TaskRecord
from tests.app import tasks
from tests.app.models import Run
from tests.conftest import DB, wait_until

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(DB == "sqlite", reason="SQLite has no server connection to drop")]

LOST = {"loom.exceptions.WorkerLost", "loom.exceptions.LeaseLost", "django.db.utils.OperationalError",
        "django.db.utils.InterfaceError"}


def terminate(role: str) -> int:
    """Terminate this test database's connections of one loom role; how many."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND application_name = %s", [f"loom {role}"])
            return cursor.fetchone()[0]
        return 0


class Terminator(threading.Thread):
    """Terminates the role's connections every ``every`` seconds until stopped."""

    def __init__(self, role: str, every: float) -> None:
        super().__init__(daemon=True)
        self.role, self.every, self.killed = role, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        from django.db import connections

        try:
            while not self.done.wait(self.every):
                self.killed += terminate(self.role)
        finally:
            connections.close_all()


@pytest.mark.skipif(DB != "postgresql", reason="targets connections by application_name (PostgreSQL)")
@pytest.mark.parametrize("role,every", [("fetcher", 0.1), ("completer", 0.1), ("heartbeat", 0.3),
                                        ("task", 0.5)])
def test_terminated_connections_lose_nothing(start_worker, monkeypatch, role, every):
    monkeypatch.setenv("LOOM_TEST_LEASE_SECONDS", "3")  # a heartbeat every second
    count = 120 if role == "task" else 300
    keys = [f"{role}{i}" for i in range(count)]
    for key in keys:
        if role == "task":
            tasks.hold_connection.enqueue(key, 0.1)
        else:
            tasks.chaos.enqueue(key)
    terminator = Terminator(role, every)
    worker = start_worker("--processes", "1", "--threads", "4")
    terminator.start()
    try:
        wait_until(lambda: not TaskRecord.objects.exclude(status__in=["SUCCESSFUL", "FAILED"]).exists(),
                   timeout=120, message="every task to finish")
    finally:
        terminator.done.set()
        terminator.join()
    worker.signal()
    assert worker.wait(timeout=60) == 0, worker.text[-3000:]
    assert terminator.killed > 0
    rows = list(TaskRecord.objects.values_list("args", "status", "errors"))
    assert Counter(status for _, status, _ in rows) == {"SUCCESSFUL": count}, [r for r in rows if r[1] != "SUCCESSFUL"][:3]
    runs = Counter(Run.objects.values_list("key", flat=True))
    assert set(runs) == set(keys)
    for (key, *_), _, errors in rows:
        lost = sum(1 for e in errors if e["exception_class_path"] in LOST)
        assert runs[key] - 1 <= lost, (key, runs[key], errors)


def test_a_task_whose_connection_drops_runs_again(start_worker):
    result = tasks.lose_connection_once.enqueue("once")
    worker = start_worker("--burst", "--processes", "1", "--threads", "1")
    assert worker.wait(timeout=60) == 0, worker.text
    result.refresh()
    assert result.status == "SUCCESSFUL" and result.attempts == 2, result.errors
    [error] = result.errors
    assert error.exception_class_path == "django.db.utils.OperationalError"
    assert Run.objects.filter(key="once").count() == 2


@pytest.mark.skipif(DB != "postgresql", reason="reads pg_backend_pid()")
def test_a_connection_that_died_while_idle_is_replaced_before_the_next_task(start_worker):
    worker = start_worker("--processes", "1", "--threads", "1", env={"LOOM_TEST_CONN_MAX_AGE": "none"})
    first = tasks.backend_pid.enqueue()
    wait_until(lambda: tasks.backend_pid.get_result(first.id).status == "SUCCESSFUL", message="first task")
    pid = tasks.backend_pid.get_result(first.id).return_value
    with connection.cursor() as cursor:  # the idle connection dies (an idle reaper, a failover)
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: not _alive(pid), message="the backend to go")
    second = tasks.backend_pid.enqueue()
    wait_until(lambda: tasks.backend_pid.get_result(second.id).status in ("SUCCESSFUL", "FAILED"),
               message="second task")
    result = tasks.backend_pid.get_result(second.id)
    assert result.status == "SUCCESSFUL" and result.attempts == 1 and not result.errors, result.errors
    assert result.return_value != pid
    worker.signal()
    assert worker.wait(timeout=60) == 0


def _alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] > 0


def test_a_worker_started_while_the_database_is_down_works_once_it_is_up(start_worker, private_postgres):
    from loom.models import TaskRecord as Record

    private_postgres.server.halt()
    worker = start_worker("--processes", "1", env=private_postgres.env)
    worker.wait_started()
    burst = start_worker("--burst", "--processes", "0", env=private_postgres.env)
    assert burst.wait(timeout=60) != 0  # a one-off run gives up, saying why
    assert "database stayed unavailable" in burst.text, burst.text
    assert worker.proc.poll() is None, worker.text  # the ordinary worker keeps trying
    private_postgres.server.resume()
    alias = private_postgres.alias
    from django.db import connections

    connections[alias].close()  # this process's own connection died with the server
    result = private_postgres.backend.enqueue(tasks.add, (2, 3), {})
    wait_until(lambda: Record.objects.using(alias).get(pk=result.id).status == "SUCCESSFUL", timeout=60,
               message="the task to run once the database is back")
    worker.signal()
    assert worker.wait(timeout=60) == 0, worker.text
    assert "Traceback" not in worker.text, worker.text
