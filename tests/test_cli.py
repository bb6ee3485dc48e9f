"""``manage.py loom status|retry|cancel|purge|prune|enqueue``: output and exit codes."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from loom.models import TaskRecord
from loom.testing import run_tasks
from tests.app import tasks

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("memory_events")]

MISSING = "01920000-0000-7000-8000-000000000000"


def loom(*args: str) -> str:
    out = io.StringIO()
    call_command("loom", *args, stdout=out)
    return out.getvalue()


def fails(*args: str) -> CommandError:
    with pytest.raises(CommandError) as info:
        loom(*args)
    return info.value


def test_status_tables_and_json():
    tasks.add.enqueue(1, 2)
    tasks.report.enqueue(2)
    text = loom("status")
    assert "QUEUE" in text and "WORKERS  0 alive" in text
    row = next(line for line in text.splitlines() if line.startswith("reports"))
    assert row.split()[1] == "1"  # one READY task in reports
    data = json.loads(loom("status", "--json"))
    assert {q["name"]: q["ready"] for q in data["queues"]} == {"default": 1, "other": 0, "reports": 1}
    assert data["tasks"]["ready"] == 2


def test_status_says_which_workers_stopped_and_which_went_silent():
    from loom.compat import task_backends

    from loom.cli.status import ago

    store, now = task_backends["default"].store, timezone.now()
    store.register_worker("w-alive", queues=["default"], concurrency={}, now=now)
    store.register_worker("w-stopped", queues=[], concurrency={}, now=now - dt.timedelta(hours=2))
    store.worker_stopped("w-stopped", now - dt.timedelta(seconds=7530), 4)
    store.register_worker("w-silent", queues=[], concurrency={}, now=now - dt.timedelta(hours=1))
    store.worker_beat("w-silent", now - dt.timedelta(hours=1), 2)
    text = loom("status")
    assert "WORKERS  1 alive, 1 stopped, 1 no heartbeat" in text
    assert "stopped 2h 5m ago" in next(line for line in text.splitlines() if "w-stopped" in line)
    assert "no heartbeat" in next(line for line in text.splitlines() if "w-silent" in line)
    states = {w["id"]: w["state"] for w in json.loads(loom("status", "--json"))["workers"]}
    assert states == {"w-alive": "alive", "w-stopped": "stopped", "w-silent": "no heartbeat"}
    assert [ago(s) for s in (0.43, 12, 200, 7530, 273600)] == ["0.4s ago", "12s ago", "3m 20s ago", "2h 5m ago",
                                                                "3d 4h ago"]


def test_status_watch_refreshes_until_told_to_stop():
    out = loom("status", "--json", "--watch", "0.01", "--times", "3")
    assert len([line for line in out.splitlines() if line.startswith("{")]) == 3


def test_status_errors():
    assert "No TASKS backend 'nope'" in str(fails("status", "--backend", "nope"))
    assert "seconds > 0" in str(fails("status", "--watch", "0"))


def test_retry_by_id_and_all_failed():
    a, b = tasks.fail.enqueue(), tasks.fail.enqueue()
    run_tasks()
    assert "1 of 1 task retried" in loom("retry", a.id)
    assert TaskRecord.objects.get(pk=a.id).status == "READY"
    assert "1 of 1 task retried" in loom("retry", "--failed")
    assert TaskRecord.objects.get(pk=b.id).status == "READY"
    assert "No failed tasks" in loom("retry", "--failed", "--queue", "reports")


def test_partial_failure_names_each_task_and_exits_3():
    ready = tasks.add.enqueue(1, 1)
    error = fails("retry", ready.id, MISSING)
    assert error.returncode == 3
    assert f"{ready.id}: is READY, cannot retry" in str(error) and f"{MISSING}: no such task" in str(error)


def test_bad_ids_exit_1_with_the_fix():
    error = fails("cancel", "12345")
    assert error.returncode == 1 and "is not a task id" in str(error)
    assert "only works with --failed" in str(fails("retry", "--queue", "default", MISSING))


def test_cancel():
    ready = tasks.add.enqueue(1, 1)
    assert "1 of 1 task cancelled" in loom("cancel", ready.id)
    assert TaskRecord.objects.get(pk=ready.id).status == "CANCELLED"
    assert fails("cancel", ready.id).returncode == 3  # already final


def test_purge_a_queue():
    keep = tasks.add.enqueue(1, 1)
    gone = [tasks.report.enqueue(i).id for i in range(3)]
    assert "3 READY tasks in queue 'reports' would be deleted" in loom("purge", "--queue", "reports", "--dry-run")
    assert "Deleted 3 READY tasks" in loom("purge", "--queue", "reports")
    assert not TaskRecord.objects.filter(pk__in=gone).exists() and TaskRecord.objects.filter(pk=keep.id).exists()
    assert "is not in TASKS['default']['QUEUES']" in str(fails("purge", "--queue", "nowhere"))


def test_prune_older_than():
    old, new = tasks.add.enqueue(1, 1), tasks.add.enqueue(2, 2)
    run_tasks()
    TaskRecord.objects.filter(pk=old.id).update(finished_at=timezone.now() - dt.timedelta(days=8))
    assert "1 finished task older than 7d would be deleted" in loom("prune", "--older-than", "7d", "--dry-run")
    assert "Deleted 1 finished task" in loom("prune", "--older-than", "7d")
    assert not TaskRecord.objects.filter(pk=old.id).exists() and TaskRecord.objects.filter(pk=new.id).exists()
    assert "is not a duration" in str(fails("prune", "--older-than", "soon"))


def test_enqueue_with_json_arguments():
    task_id = loom("enqueue", "tests.app.tasks.echo", "--args", '[1, "two"]', "--kwargs", '{"k": [3]}',
                   "--queue", "other", "--priority", "7").strip()
    row = TaskRecord.objects.get(pk=task_id)
    assert (row.args, row.kwargs, row.queue_name, row.priority) == ([1, "two"], {"k": [3]}, "other", 7)
    run_tasks()
    assert TaskRecord.objects.get(pk=task_id).return_value == {"args": [1, "two"], "kwargs": {"k": [3]}}


@pytest.mark.parametrize("args, words", [
    (["tests.app.tasks.nothing_here"], "Cannot import"),
    (["tests.app.tasks.plain_function"], "not a task; decorate it with @task"),
    (["tests.app.tasks.add", "--args", "{oops"], "--args is not valid JSON"),
    (["tests.app.tasks.add", "--args", '{"a": 1}'], "--args must be a JSON list"),
    (["tests.app.tasks.add", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
    (["tests.app.tasks.add", "--queue", "nowhere"], "Cannot enqueue"),
])
def test_enqueue_errors(args, words):
    error = fails("enqueue", *args)
    assert error.returncode == 1 and words in str(error)
