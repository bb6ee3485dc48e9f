"""Maintenance services, driven by run_once() with an injected clock (no sleeping)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from loom.compat import task_backends
from loom.models import LeaderLease, PeriodicTick, TaskRecord
from loom.testing import Clock
from loom.worker.leader import Leader
from loom.worker.maintenance.pruner import Pruner
from loom.worker.maintenance.rescuer import Rescuer
from loom.worker.maintenance.scheduler import Scheduler
from tests.app import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store():
    return task_backends["default"].store


def claim_as_ghost(store, clock, n=1):
    return store.claim("ghost", None, n, clock(), clock() + timedelta(seconds=30))


@pytest.mark.parametrize("max_attempts,extra,expected", [(3, 0, "READY"), (1, 0, "FAILED"), (1, 2, "READY")])
def test_rescuer_ends_attempts_whose_lease_expired(store, max_attempts, extra, expected):
    clock = Clock()
    result = tasks.add.enqueue(1, 2)
    TaskRecord.objects.filter(pk=result.id).update(max_attempts=max_attempts)
    [claimed] = claim_as_ghost(store, clock)
    rescuer = Rescuer(store, clock, extra_attempts=extra)
    rescuer.run_once()
    assert TaskRecord.objects.get(pk=result.id).status == "RUNNING"  # lease still valid
    clock.advance(31)
    rescuer.run_once()
    row = TaskRecord.objects.get(pk=result.id)
    assert row.status == expected and row.attempts == 1 and row.claimed_by is None
    assert row.errors[-1]["exception_class_path"] == "loom.exceptions.WorkerLost"
    assert (row.finished_at is None) == (expected == "READY")
    assert rescuer.rescued == 1


def test_a_renewed_lease_is_not_rescued(store):
    clock = Clock()
    tasks.add.enqueue(1, 2)
    [claimed] = claim_as_ghost(store, clock)
    clock.advance(25)
    store.heartbeat("ghost", [claimed.id], clock() + timedelta(seconds=30))
    clock.advance(25)
    Rescuer(store, clock).run_once()
    assert TaskRecord.objects.get().status == "RUNNING"


def test_one_leader_at_a_time_with_takeover(store):
    clock = Clock()
    backend = task_backends["default"]
    first, second = Leader(store, "w1", backend, clock), Leader(store, "w2", backend, clock)
    first.run_once()
    second.run_once()
    assert first.is_leader and not second.is_leader
    clock.advance(10)
    first.run_once()  # renews
    second.run_once()
    assert first.is_leader and not second.is_leader
    clock.advance(backend.config.lease_seconds + 1)  # first stops renewing (died)
    second.run_once()
    assert second.is_leader and LeaderLease.objects.get().holder == "w2"
    first.run_once()
    assert not first.is_leader


def test_leader_runs_the_rescuer(store):
    clock = Clock()
    backend = task_backends["default"]
    tasks.add.enqueue(1, 2)
    claim_as_ghost(store, clock)
    clock.advance(backend.config.lease_seconds + 1)
    Leader(store, "w1", backend, clock).run_once()
    assert TaskRecord.objects.get().errors[-1]["exception_class_path"] == "loom.exceptions.WorkerLost"


PERIODIC = {
    "default": {
        "BACKEND": "loom.backends.DatabaseBackend",
        "QUEUES": ["default", "reports", "other"],
        "OPTIONS": {"PERIODIC": {"every-minute": {"task": "tests.app.tasks.add", "cron": "* * * * *",
                                                  "args": [2, 3]}}},
    }
}


@override_settings(TASKS=PERIODIC)
def test_scheduler_enqueues_each_tick_once_even_with_two_leaders():
    backend = task_backends["default"]
    clock = Clock()
    clock.now = clock.now.replace(second=30, microsecond=0)
    a, b = Scheduler(backend.store, backend, clock), Scheduler(backend.store, backend, clock)
    a.run_once()
    b.run_once()
    a.run_once()
    assert TaskRecord.objects.count() == 1 and PeriodicTick.objects.count() == 1
    row = TaskRecord.objects.get()
    assert row.task_path == "tests.app.tasks.add" and row.args == [2, 3]
    clock.advance(60)
    b.run_once()
    a.run_once()
    assert TaskRecord.objects.count() == 2
    assert a.enqueued + b.enqueued == 2


def test_pruner_deletes_only_old_finished_results(store):
    clock = Clock()
    old_done, new_done, old_ready = (tasks.add.enqueue(i, i) for i in range(3))
    TaskRecord.objects.filter(pk__in=[old_done.id, new_done.id]).update(status="SUCCESSFUL")
    TaskRecord.objects.filter(pk=old_done.id).update(finished_at=clock() - timedelta(days=8))
    TaskRecord.objects.filter(pk=new_done.id).update(finished_at=clock() - timedelta(days=1))
    TaskRecord.objects.filter(pk=old_ready.id).update(enqueued_at=clock() - timedelta(days=30))
    Pruner(store, task_backends["default"].config, clock).run_once()
    assert set(map(str, TaskRecord.objects.values_list("id", flat=True))) == {new_done.id, old_ready.id}


def test_bad_periodic_option_is_a_clear_error():
    from loom.conf import Options

    with pytest.raises(ValueError, match="not a valid cron"):
        Options.from_settings({"PERIODIC": {"x": {"task": "a.b", "cron": "every day"}}})
    with pytest.raises(ValueError, match="Unknown loom OPTIONS key 'LEASE'"):
        Options.from_settings({"LEASE": 3})


def test_pruning_goes_in_batches_and_spares_what_changed(store):
    clock = Clock()
    results = [tasks.add.enqueue(i, i) for i in range(7)]
    TaskRecord.objects.update(status="FAILED", finished_at=clock() - timedelta(days=8))
    keep = results[0].id
    TaskRecord.objects.filter(pk=keep).update(status="READY", finished_at=None)  # an operator's retry
    assert store.prune(clock() - timedelta(days=7), batch=2) == 6
    assert [str(i) for i in TaskRecord.objects.values_list("id", flat=True)] == [keep]
