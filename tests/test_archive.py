"""Finished tasks in archive tables on PostgreSQL (``loom.store.archive``): moved by the leader's
archiver, still found by every reader, put back by a retry, pruned by dropping whole tables
without waiting for claims, and never by a DROP that queues readers behind a long one."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction

from loom.actions import perform
from loom.compat import task_backends
from loom.models import TaskRecord
from loom.queries import status_counts
from loom.store.archive import slice_seconds
from loom.testing import Clock, run_tasks
from loom.worker.leader import Leader
from loom.worker.maintenance.archiver import Archiver
from loom.worker.maintenance.pruner import Pruner
from tests.app import flow_tasks, tasks
from tests.conftest import DB

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(DB != "postgresql", reason="archive tables need PostgreSQL's table inheritance")]


@pytest.fixture
def backend():
    backend = task_backends["default"]
    yield backend
    for name, _, _ in backend.store.archive_tables():  # a flush empties them, it does not drop them
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {name}")


def table_of(task_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM loom_task WHERE id = %s", [task_id])
        row = cursor.fetchone()
    return row[0] if row else None


def finished_ago(ids, clock, seconds: float) -> None:
    TaskRecord.objects.filter(pk__in=ids).update(finished_at=clock() - timedelta(seconds=seconds))


def test_finished_tasks_move_out_of_the_hot_table_and_are_still_found(backend):
    clock = Clock()
    done, failed = tasks.add.enqueue(2, 3), tasks.fail.enqueue("no")
    windowed = flow_tasks.interval.using(unique_key="w", unique_window=3600).enqueue("x")
    run_tasks(clock=clock)
    fresh, waiting = tasks.add.enqueue(1, 1), tasks.add.enqueue(4, 4)
    run_tasks(clock=clock)  # both run; waiting is put back below
    TaskRecord.objects.filter(pk=waiting.id).update(status="READY", finished_at=None)
    finished_ago([done.id, failed.id, windowed.id], clock, 120)
    before = {r["id"]: r for r in TaskRecord.objects.values()}
    counts = status_counts(backend)

    Leader(backend.store, "w1", backend, clock).run_once()  # the archiver is one of its services

    assert table_of(done.id) == table_of(failed.id) != "loom_task"
    assert table_of(done.id).startswith("loom_task_done_")
    # Just finished, still waiting, and holding a unique key for an hour: they stay.
    assert {table_of(i) for i in (fresh.id, waiting.id, windowed.id)} == {"loom_task"}
    assert {r["id"]: r for r in TaskRecord.objects.values()} == before
    assert status_counts(backend) == counts
    assert backend.get_result(done.id).return_value == 5
    assert backend.get_result(failed.id).errors[0].exception_class_path.endswith("ValueError")


def test_a_retried_archived_task_runs_again(backend):
    clock = Clock()
    failed = tasks.fail.enqueue("once")
    run_tasks(clock=clock)
    finished_ago([failed.id], clock, 120)
    assert Archiver(backend.store, backend.config, clock).run_once() >= 0
    assert table_of(failed.id) != "loom_task"

    report = perform(backend, "retry", [failed.id])

    assert report.changed == 1 and table_of(failed.id) == "loom_task"
    [claimed] = backend.store.claim("w1", None, 10, clock(), clock() + timedelta(seconds=30))
    assert str(claimed.id) == failed.id and claimed.attempts == 2


def test_the_pruner_drops_whole_old_tables_and_an_operator_prune_is_exact(backend):
    clock = Clock()
    retention = backend.config.retention
    day = slice_seconds(retention)
    results = [tasks.add.enqueue(i, i) for i in range(4)]
    run_tasks(clock=clock)
    old, straddling, young, newest = (r.id for r in results)
    finished_ago([old], clock, retention + 2 * day)
    finished_ago([straddling], clock, retention + 1)  # older than the retention, its slice is not
    finished_ago([young], clock, retention - day)
    archiver = Archiver(backend.store, backend.config, clock)
    archiver.run_once()
    assert table_of(newest) == "loom_task"
    tables = {table_of(i) for i in (old, straddling, young)}
    # The straddling task may share a slice with the young one, never with the old one.
    assert len(tables) >= 2 and table_of(old) not in {table_of(straddling), table_of(young)}

    Pruner(backend.store, backend.config, clock).run_once()

    assert table_of(old) is None
    assert {r.id for r in results[1:]} == {str(i) for i in TaskRecord.objects.values_list("id", flat=True)}
    assert len(backend.store.archive_tables()) == len(tables) - 1

    assert backend.store.prune(clock() - timedelta(seconds=retention)) == 1  # what the CLI does
    assert table_of(straddling) is None and table_of(young) and table_of(newest)


def test_dropping_an_archive_waits_for_no_claim_and_gives_way_to_a_long_reader(backend):
    clock = Clock()
    old = tasks.add.enqueue(1, 2)
    run_tasks(clock=clock)
    finished_ago([old.id], clock, backend.config.retention + 2 * slice_seconds(backend.config.retention))
    Archiver(backend.store, backend.config, clock).run_once()
    [(archive, _, _)] = backend.store.archive_tables()
    tasks.add.enqueue(3, 4)
    holding, release = threading.Event(), threading.Event()

    def hold(statement: str) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement)
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    # A worker's claim holds its rows of loom_task (FOR UPDATE) in an open transaction.
    claim = threading.Thread(target=hold, args=("SELECT id FROM ONLY loom_task FOR UPDATE SKIP LOCKED",))
    claim.start()
    holding.wait(10)
    began = time.monotonic()
    try:
        assert backend.store.prune(clock() - timedelta(seconds=backend.config.retention), exact=False) == 1
    finally:
        release.set()
        claim.join()
    assert time.monotonic() - began < 1.0 and table_of(old.id) is None

    # A long reader of the archive (a report): the DROP gives up after its lock timeout instead
    # of queueing every later reader of loom_task behind it; the next pass drops the table.
    second = tasks.add.enqueue(5, 6)
    run_tasks(clock=clock)
    finished_ago([second.id], clock, backend.config.retention + 2 * slice_seconds(backend.config.retention))
    Archiver(backend.store, backend.config, clock).run_once()
    [(archive, _, _)] = backend.store.archive_tables()
    holding.clear(), release.clear()
    reader = threading.Thread(target=hold, args=(f"SELECT count(*) FROM {archive}",))
    reader.start()
    holding.wait(10)
    try:
        assert backend.store.prune(clock() - timedelta(seconds=backend.config.retention), exact=False) == 0
        assert TaskRecord.objects.filter(pk=second.id).exists()  # readers were not held up meanwhile
    finally:
        release.set()
        reader.join()
    assert backend.store.prune(clock() - timedelta(seconds=backend.config.retention), exact=False) == 1
    assert backend.store.archive_tables() == []


def test_a_database_user_that_may_not_create_tables_keeps_finished_tasks_in_place(backend, caplog):
    """PostgreSQL 15 lets only a database's owner create tables in its public schema: a worker
    that runs as a plain application user cannot make archive tables. It says so once an hour
    and what to grant; the pruner deletes finished rows instead, as on SQLite."""
    clock = Clock()
    done = tasks.add.enqueue(1, 2)
    run_tasks(clock=clock)
    finished_ago([done.id], clock, 2 * backend.config.retention)
    role = f"loom_app_user_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}, PUBLIC")
        cursor.execute(f"SET ROLE {role}")
    try:
        delay = Archiver(backend.store, backend.config, clock).run_once()
        assert delay == 3600.0 and table_of(done.id) == "loom_task"
        assert "GRANT CREATE ON SCHEMA" in caplog.text
        assert backend.store.prune(clock() - timedelta(seconds=backend.config.retention), exact=False) == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")
    assert table_of(done.id) is None
