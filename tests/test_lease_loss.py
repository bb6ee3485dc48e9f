"""A worker that lost a task's claim stops that run, on every database, with the worker's defaults.

Two ways to lose a claim without a network partition (tests/test_partition.py has that one):
another worker was given the task (here: the row is changed as a rescue and a new claim would
change it), and the worker could not renew its leases for a whole lease (here: another client
holds a lock that its heartbeat waits for, as a long migration or a forgotten shell does).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from loom.models import TaskRecord
from tests.app import tasks
from tests.app.models import Run
from tests.conftest import DB, task_table_locked, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = "3"  # a heartbeat every second
HOLD = 5.0  # seconds the lock is held: longer than the lease, shorter than the task


def _running(key: str) -> TaskRecord:
    wait_until(lambda: Run.objects.filter(key__startswith=f"{key}@").exists(), message=f"{key} to start")
    return TaskRecord.objects.get(status="RUNNING")


def test_a_run_whose_task_was_given_to_another_worker_is_stopped(start_worker):
    result = tasks.partition_work.enqueue("given", 60)
    worker = start_worker("--processes", "1", "--threads", "2", env={"LOOM_TEST_LEASE_SECONDS": LEASE})
    row = _running("given")
    # What a rescue after an expired lease and another worker's claim leave in the row.
    TaskRecord.objects.filter(pk=row.pk).update(claimed_by="another-host-1-abc", attempts=row.attempts + 1)
    worker.signal()  # a graceful stop waits for running tasks: it returns only if the run stopped
    assert worker.wait(timeout=30) == 0, worker.text
    assert "another worker was given the task" in worker.text, worker.text
    row.refresh_from_db()
    assert (row.status, row.claimed_by, row.errors) == ("RUNNING", "another-host-1-abc", [])
    assert Run.objects.filter(key__startswith="given@").count() == 1
    assert result.id == str(row.pk)


def test_a_worker_that_cannot_renew_its_leases_stops_its_runs_and_they_run_again(start_worker):
    tasks.partition_work.enqueue("held", 8)
    worker = start_worker("--processes", "1", "--threads", "2", env={"LOOM_TEST_LEASE_SECONDS": LEASE})
    row = _running("held")
    locked = threading.Event()

    def hold_lock() -> None:
        """Another client holds what the heartbeat's renewal must wait for, past the lease."""
        try:
            with transaction.atomic():
                if DB == "sqlite":
                    Run.objects.create(key="lock")  # the database's write lock
                else:
                    TaskRecord.objects.select_for_update().get(pk=row.pk)  # the task's row
                locked.set()
                time.sleep(HOLD)  # the fault's length, not a synchronisation
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    holder.join()
    assert locked.is_set()
    wait_until(lambda: TaskRecord.objects.get(pk=row.pk).status == "SUCCESSFUL", timeout=60,
               message="the task to run again and succeed")
    row.refresh_from_db()
    # The stopped run is a lost attempt, ended by the worker itself (LeaseLost) or, if the rescuer
    # got there first once the lock was gone, by the rescuer (WorkerLost); never a failure. Each
    # run beyond the first is explained by one such attempt.
    lost = [e["exception_class_path"] for e in row.errors]
    assert lost and set(lost) <= {"loom.exceptions.LeaseLost", "loom.exceptions.WorkerLost"}, row.errors
    runs = Run.objects.filter(key__startswith="held@").count()
    assert runs >= 2 and runs - 1 <= len(lost) and row.attempts == len(lost) + 1, (runs, row.attempts, row.errors)
    worker.signal()
    assert worker.wait(timeout=30) == 0, worker.text



@pytest.mark.skipif(DB == "sqlite", reason="SQLite has no table lock that holds up readers (WAL)")
def test_a_locked_table_holds_up_no_lapsed_lease(start_worker):
    """A migration's ALTER TABLE, or a user's LOCK TABLE, on loom's table: every query the worker
    makes waits for it. The watchdog needs none, so it still stops the run whose lease ran out,
    while the lock is held (it used to wait behind its own read of cancel requests)."""
    tasks.stoppable_work.enqueue("table", 10)
    worker = start_worker("--processes", "1", "--threads", "2", env={"LOOM_TEST_LEASE_SECONDS": LEASE})
    row = _running("table")
    with task_table_locked():
        # The task records its own stop in a table of its own, which the lock does not hold.
        wait_until(lambda: Run.objects.filter(key="table@stopped:LeaseLost").exists(), timeout=30,
                   message="the run to be stopped while loom's table is locked")
    wait_until(lambda: TaskRecord.objects.get(pk=row.pk).status == "SUCCESSFUL", timeout=60,
               message="the stopped run's task to run again and succeed")
    row.refresh_from_db()
    lost = [e["exception_class_path"] for e in row.errors]
    assert lost and set(lost) <= {"loom.exceptions.LeaseLost", "loom.exceptions.WorkerLost"}, row.errors
    assert Run.objects.filter(key="table@start").count() == 2
    worker.signal()
    assert worker.wait(timeout=30) == 0, worker.text


def test_a_claim_that_waited_out_the_lease_is_not_stopped_as_lapsed(start_worker):
    """After an outage longer than the lease, the claim that waited through it got its rows when
    the database answered again: the fetcher renews them before they start, so the run goes on and
    the task runs once (it was stopped at once as lapsed, and ran a second time, while the
    heartbeat had not caught up yet). The run that was
    going on during the outage is stopped as before. The claim waits through the outage where
    the fetcher sleeps until the task is due (PostgreSQL's listener); a polling fetcher may find
    it before it is due, and claim it only after the outage."""
    tasks.stoppable_work.enqueue("during", 6)
    worker = start_worker("--processes", "1", "--threads", "2", env={"LOOM_TEST_LEASE_SECONDS": LEASE})
    _running("during")
    # Due well inside the outage: enqueuing and taking the lock took over 0.4 s on a slow machine.
    due = timezone.now() + timedelta(seconds=1.5)
    after = tasks.partition_work.using(run_after=due).enqueue("after", 0.5)
    with task_table_locked():  # an outage: every claim and renewal waits
        assert timezone.now() < due - timedelta(seconds=0.1), "the outage began too late to test anything"
        time.sleep(HOLD + 2)  # the outage's length (past the lease after the claim began), not a synchronisation
    wait_until(lambda: TaskRecord.objects.get(pk=after.id).status == "SUCCESSFUL", timeout=30,
               message="the task claimed at the end of the outage to succeed")
    assert Run.objects.filter(key__startswith="after@").count() == 1
    # Its lease, counted from before the wait, had run out when the claim came back: the rescuer
    # may have put it back before the fetcher renewed it, a lost attempt that never ran.
    record = TaskRecord.objects.get(pk=after.id)
    lost = [e["exception_class_path"] for e in record.errors]
    assert set(lost) <= {"loom.exceptions.WorkerLost"} and record.attempts == len(lost) + 1, record.errors
    # The run held through the outage lost its lease and was stopped: the fence still works.
    wait_until(lambda: Run.objects.filter(key="during@stopped:LeaseLost").exists(), timeout=30,
               message="the run held through the outage to be stopped")
    worker.signal()
    assert worker.wait(timeout=60) == 0, worker.text
