"""The completer with a real database that refuses one outcome of a batch.

A constraint (PostgreSQL, MariaDB) or trigger (SQLite) refuses any return value containing
"poison-marker", the way a real database refuses a value it cannot hold. The batch is split until
the bad outcome stands alone: that task alone ends FAILED with OutcomeNotStored naming the
database's reason, every other outcome is written, and a --burst worker finishes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from loom.codec import dumps
from loom.models import TaskRecord
from loom.records import Outcome
from loom.store import Store
from loom.worker.completer import Completer
from tests.app import tasks

pytestmark = pytest.mark.django_db(transaction=True)

POISON = "poison-marker"


@pytest.fixture
def refuses_poison():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("CREATE TRIGGER no_poison BEFORE UPDATE OF return_value ON loom_task "
                           f"WHEN NEW.return_value LIKE '%{POISON}%' BEGIN SELECT RAISE(ABORT, 'no poison'); END")
        else:
            cursor.execute("ALTER TABLE loom_task ADD CONSTRAINT no_poison CHECK "
                           f"(return_value IS NULL OR return_value{'::text' if connection.vendor == 'postgresql' else ''} "
                           f"NOT LIKE '%{POISON}%')")
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER no_poison")
        elif connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE loom_task DROP CONSTRAINT no_poison")
        else:
            cursor.execute("ALTER TABLE loom_task DROP CONSTRAINT no_poison")


def test_a_refused_outcome_fails_its_task_alone(refuses_poison):
    store = Store()
    for i in range(10):
        tasks.echo.enqueue(i)
    now = timezone.now()
    claimed = store.claim("w1", None, 10, now, now + timedelta(seconds=30))
    poisoned = claimed[6].id
    outcomes = [Outcome(id=c.id, status="SUCCESSFUL", finished_at=now, available_at=None,
                        return_value_json=dumps(POISON if c.id == poisoned else c.args[0]), errors_json="[]",
                        attempt=c.attempts) for c in claimed]
    written = []
    completer = Completer(store, "w1", delay=0, batch_size=100, on_written=written.extend)
    for outcome in outcomes:
        completer.put(outcome)
    completer.flush()
    assert sorted(written) == sorted(c.id for c in claimed) and completer.outstanding == 0
    assert completer.refused == 1
    bad = TaskRecord.objects.get(pk=poisoned)
    assert bad.status == "FAILED" and bad.return_value is None
    [error] = bad.errors
    assert error["exception_class_path"] == "loom.exceptions.OutcomeNotStored"
    assert "refused to store its outcome" in error["traceback"] and error["attempt"] == 1
    others = TaskRecord.objects.exclude(pk=poisoned)
    assert sorted(others.values_list("status", flat=True)) == ["SUCCESSFUL"] * 9
    assert sorted(r.return_value for r in others) == sorted(c.args[0] for c in claimed if c.id != poisoned)


def test_a_burst_worker_finishes_despite_a_poison_outcome(refuses_poison, start_worker):
    results = [tasks.echo.enqueue(i) for i in range(30)]
    bad = tasks.echo.enqueue(POISON)
    worker = start_worker("--burst", "--processes", "1", "--threads", "8")
    assert worker.wait(timeout=60) == 0, worker.text
    bad.refresh()
    assert bad.status == "FAILED" and [e.exception_class_path for e in bad.errors] == [
        "loom.exceptions.OutcomeNotStored"]
    for result in results:
        result.refresh()
        assert result.status == "SUCCESSFUL"
