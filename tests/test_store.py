"""The Store contract: every named query, the same assertions on every database.

Runs in each of the suite's database runs (SQLite, PostgreSQL, MariaDB), so the three sets of
SQL files are held to one behaviour. Time comes from ``loom.testing.Clock``; nothing sleeps.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from loom.codec import dumps
from loom.models import TaskRecord, WorkerRecord
from loom.records import Outcome
from loom.store import Store
from loom.testing import Clock
from tests.app import tasks

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = 30


@pytest.fixture
def store() -> Store:
    return Store("default")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def claim(store, clock, worker="w1", n=10, queues=None):
    return store.claim(worker, queues, n, clock(), clock() + timedelta(seconds=LEASE))


def outcome(claimed, status="SUCCESSFUL", value=None, at=None):
    return Outcome(id=claimed.id, status=status, finished_at=at, available_at=None,
                   return_value_json=None if value is None else dumps(value), errors_json="[]",
                   attempt=claimed.attempts)


def test_claim_takes_due_rows_by_priority_then_age_and_returns_them_as_changed(store, clock):
    low = tasks.add.using(priority=-5).enqueue(1, 1)
    first = tasks.add.enqueue(2, 2)
    second = tasks.add.enqueue(3, 3)
    high = tasks.add.using(priority=5).enqueue(4, 4)
    later = tasks.add.using(run_after=clock() + timedelta(hours=1)).enqueue(5, 5)
    other_queue = tasks.report.enqueue(6)
    claimed = claim(store, clock, queues=["default"], n=3)
    assert [c.id for c in claimed] == [high.id, first.id, second.id]
    c = claimed[0]
    assert (c.attempts, c.worker_ids, c.args, c.kwargs) == (1, ["w1"], [4, 4], {})
    assert c.started_at == clock() and c.last_attempted_at == clock() and c.task_path == "tests.app.tasks.add"
    row = TaskRecord.objects.get(pk=high.id)
    assert (row.status, row.claimed_by, row.attempts, row.worker_ids) == ("RUNNING", "w1", 1, ["w1"])
    assert row.lease_expires_at == clock() + timedelta(seconds=LEASE)
    assert [c.id for c in claim(store, clock, queues=["default"])] == [low.id]  # not `later`, not reports
    assert [c.id for c in claim(store, clock, queues=["reports"])] == [other_queue.id]
    assert TaskRecord.objects.get(pk=later.id).status == "READY"
    assert store.next_available_at(["default"]) == TaskRecord.objects.get(pk=later.id).available_at


def test_complete_many_is_fenced_by_worker_and_attempt(store, clock):
    a, b = tasks.add.enqueue(1, 1), tasks.add.enqueue(2, 2)
    ca, cb = claim(store, clock)
    assert store.complete_many("someone-else", [outcome(ca, value=2)]) == 0
    stale = Outcome(id=cb.id, status="SUCCESSFUL", finished_at=clock(), available_at=None,
                    return_value_json="99", errors_json="[]", attempt=cb.attempts + 1)
    assert store.complete_many("w1", [outcome(ca, value=2, at=clock()), stale]) == 1
    row_a, row_b = TaskRecord.objects.get(pk=a.id), TaskRecord.objects.get(pk=b.id)
    assert (row_a.status, row_a.return_value, row_a.claimed_by) == ("SUCCESSFUL", 2, None)
    assert row_b.status == "RUNNING"


def test_a_rescued_and_reclaimed_task_ignores_the_late_outcome_of_its_old_run(store, clock):
    result = tasks.add.enqueue(1, 1)
    [old] = claim(store, clock)
    clock.advance(LEASE + 1)
    assert store.rescue(clock(), expired=True, error_class="loom.exceptions.WorkerLost", error_text="lost\n",
                        extra_attempts=5) == [result.id]
    [new] = claim(store, clock)  # the same worker, even
    assert new.attempts == 2
    assert store.complete_many("w1", [outcome(old, value="late")]) == 0
    assert store.complete_many("w1", [outcome(new, value="fresh")]) == 1
    assert TaskRecord.objects.get(pk=result.id).return_value == "fresh"


def test_release_puts_rows_back_as_if_never_claimed(store, clock):
    result = tasks.add.enqueue(1, 1)
    [claimed] = claim(store, clock)
    assert store.release("w1", [claimed.id]) == 1
    row = TaskRecord.objects.get(pk=result.id)
    assert (row.status, row.attempts, row.worker_ids, row.claimed_by, row.started_at) == ("READY", 0, [], None, None)


def test_release_orphans_keeps_what_the_worker_holds(store, clock):
    for i in range(3):
        tasks.add.enqueue(i, i)
    held, *lost = claim(store, clock)
    assert store.release_orphans("w1", [held.id]) == 2
    statuses = dict(TaskRecord.objects.values_list("id", "status"))
    assert {str(k): v for k, v in statuses.items()} == {held.id: "RUNNING", lost[0].id: "READY", lost[1].id: "READY"}
    assert store.release_orphans("w2", []) == 0  # another worker's rows are never touched


def test_heartbeat_renews_only_the_given_rows_of_the_worker(store, clock):
    for i in range(2):
        tasks.add.enqueue(i, i)
    held, other = claim(store, clock)
    until = clock() + timedelta(seconds=90)
    assert store.heartbeat("w1", [held.id], until) == [held.id]
    assert store.heartbeat("w2", [held.id], until) == []
    assert store.heartbeat("w1", [], until) == []
    assert TaskRecord.objects.get(pk=held.id).lease_expires_at == until
    assert TaskRecord.objects.get(pk=other.id).lease_expires_at == clock() + timedelta(seconds=LEASE)


def test_rescue_records_an_attempt_entry_and_retries_or_fails(store, clock):
    retried, failed, kept = (tasks.add.enqueue(i, i) for i in range(3))
    c_retried, c_failed, c_kept = claim(store, clock)
    assert store.rescue(clock(), task_ids=[c_retried.id], claimed_by="w1", error_class="loom.exceptions.WorkerLost",
                        error_text="gone\n", extra_attempts=1) == [retried.id]
    assert store.rescue(clock(), task_ids=[c_failed.id], claimed_by="w1", retry=False,
                        error_class="loom.exceptions.OutcomeNotStored", error_text="refused\n") == [failed.id]
    assert store.rescue(clock(), task_ids=[c_kept.id], claimed_by="w2", error_class="x", error_text="x") == []
    row = TaskRecord.objects.get(pk=retried.id)
    assert (row.status, row.attempts, row.finished_at, row.claimed_by) == ("READY", 1, None, None)
    [entry] = row.errors
    assert entry["exception_class_path"] == "loom.exceptions.WorkerLost" and entry["traceback"] == "gone\n"
    assert entry["attempt"] == 1 and entry["worker_id"] == "w1"
    assert entry["started_at"].startswith(clock().strftime("%Y-%m-%dT%H:%M:%S"))
    assert entry["finished_at"].startswith(clock().strftime("%Y-%m-%dT%H:%M:%S"))
    row = TaskRecord.objects.get(pk=failed.id)
    assert row.status == "FAILED" and row.finished_at == clock()
    assert TaskRecord.objects.get(pk=kept.id).status == "RUNNING"


def test_rescue_appends_after_earlier_errors_kept_verbatim(store, clock):
    result = tasks.add.enqueue(1, 1)
    [claimed] = claim(store, clock)
    awkward = [{"exception_class_path": "x.Y", "traceback": "nul \x00 and \ud800 and é", "attempt": 0}]
    TaskRecord.objects.filter(pk=result.id).update(errors=awkward)
    store.rescue(clock(), task_ids=[claimed.id], error_class="loom.exceptions.WorkerLost", error_text="again\n",
                 extra_attempts=5)
    errors = TaskRecord.objects.get(pk=result.id).errors
    assert errors[0] == awkward[0] and errors[1]["traceback"] == "again\n" and len(errors) == 2


def test_rescue_by_dead_worker(store, clock):
    result = tasks.add.enqueue(1, 1)
    claim(store, clock, worker="dead")
    assert store.rescue(clock(), workers=["dead"], error_class="loom.exceptions.WorkerLost", error_text="x\n",
                        extra_attempts=1) == [result.id]


def test_cancel_requests_reach_the_running_worker(store, clock):
    result = tasks.add.enqueue(1, 1)
    claim(store, clock)
    assert store.cancelled("w1") == []
    store.cancel([result.id], clock())
    assert store.cancelled("w1") == [result.id]
    assert store.cancelled("w2") == []


def test_election_holds_one_leader_and_hands_over_on_expiry(store, clock):
    until = clock() + timedelta(seconds=10)
    assert store.elect("role", "w1", clock(), until)
    assert not store.elect("role", "w2", clock(), until)
    assert store.elect("role", "w1", clock(), until)  # renewal
    clock.advance(11)
    assert store.elect("role", "w2", clock(), clock() + timedelta(seconds=10))
    store.resign("role", "w2")
    assert store.elect("role", "w3", clock(), clock() + timedelta(seconds=10))


def test_register_worker_is_idempotent(store, clock):
    store.register_worker("w1", queues=["default"], concurrency={"threads": 2}, now=clock())
    store.register_worker("w1", queues=["default"], concurrency={"threads": 2}, now=clock())
    [row] = WorkerRecord.objects.all()
    assert row.id == "w1" and row.stopped_at is None
    store.worker_stopped("w1", clock(), 7)
    row.refresh_from_db()
    assert row.stopped_at == clock() and row.tasks_done == 7


def test_progress_of_a_running_task_keeps_only_what_a_text_column_holds(store, clock):
    result = tasks.add.enqueue(1, 1)
    claim(store, clock)
    assert store.progress(result.id, 1, 2, "half \x00 way \ud800", clock()) == 1
    row = TaskRecord.objects.get(pk=result.id)
    assert (row.progress_current, row.progress_total) == (1, 2)
    assert "\x00" not in row.progress_message and row.progress_message.startswith("half")


def test_answers(store):
    assert store.answers()
