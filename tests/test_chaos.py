"""Chaos: SIGKILL worker children every second and the whole worker twice while 5,000 tasks
run (and, on PostgreSQL, restart the database server once). Nothing may be lost: every task
ends SUCCESSFUL, and a task that ran twice was in flight at a kill (its errors say WorkerLost)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.tasks import task_backends

from loom.models import TaskRecord
from tests.app import retry_tasks
from tests.app.models import Run
from tests.conftest import child_pids, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# 5,000 on SQLite and PostgreSQL (the figure); MariaDB, which only polls, gets a shorter run.
TASKS = int(os.environ.get("LOOM_CHAOS_TASKS", "1000" if os.environ.get("LOOM_TEST_DB") == "mysql" else "5000"))


def restart_postgresql() -> bool:
    clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not clusters or not shutil.which("pg_ctlcluster"):
        return False
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "restart"],
                   check=True, capture_output=True, timeout=120)
    return True


def unfinished() -> int:
    try:
        return TaskRecord.objects.exclude(status="SUCCESSFUL").count()
    except DatabaseError:
        connection.close()  # the server restarted under us: reconnect next time
        return -1


def test_nothing_is_lost_when_workers_are_killed(start_worker, monkeypatch, capsys):
    monkeypatch.setenv("LOOM_TEST_LEASE_SECONDS", "3")
    backend = task_backends["default"]
    for start in range(0, TASKS, 1000):
        backend.enqueue_many(retry_tasks.chaos, [((f"c{i}",), {}) for i in range(start, min(start + 1000, TASKS))])
    args = ("--processes", "3", "--threads", "4", "--grace", "5")
    worker = start_worker(*args)
    worker.wait_started()
    rng = random.Random(1234)
    child_kills = whole_kills = 0
    restarted_db = False
    deadline = time.monotonic() + 300
    tick = 0
    while unfinished() != 0 and time.monotonic() < deadline:
        time.sleep(1.0)  # the chaos cadence: one blow per second
        tick += 1
        if tick in (3, 7) and whole_kills < 2:
            worker.proc.kill()  # the supervisor; its children die with it
            worker.wait(timeout=30)
            wait_until(lambda: not child_pids(worker.proc.pid), message="children to die with their supervisor")
            whole_kills += 1
            worker = start_worker(*args)
            worker.wait_started()
        elif tick == 5 and connection.vendor == "postgresql" and not restarted_db:
            restarted_db = restart_postgresql()
            connection.close()
        else:
            children = child_pids(worker.proc.pid)
            if children:
                try:
                    os.kill(rng.choice(children), signal.SIGKILL)
                    child_kills += 1
                except ProcessLookupError:
                    pass
    remaining = unfinished()
    worker.signal(signal.SIGTERM)
    worker.wait(timeout=60)

    runs = Counter(Run.objects.values_list("key", flat=True))
    twice = [key for key, n in runs.items() if n > 1]
    statuses = Counter(TaskRecord.objects.values_list("status", flat=True))
    lost = TASKS - statuses["SUCCESSFUL"]
    never_ran = TASKS - len(runs)
    with capsys.disabled():
        print(f"\nchaos [{connection.vendor}]: enqueued={TASKS} succeeded={statuses['SUCCESSFUL']} "
              f"lost={lost} never_ran={never_ran} ran_twice={len(twice)} child_kills={child_kills} "
              f"whole_worker_kills={whole_kills} database_restarted={restarted_db} seconds={tick}")
    assert remaining == 0 and lost == 0 and never_ran == 0, statuses
    assert whole_kills == 2 and child_kills >= 3
    if connection.vendor == "postgresql":
        assert restarted_db, "the PostgreSQL restart did not happen (pg_ctlcluster missing?)"
    # A second run is allowed only for a task that was in flight when its worker was killed.
    twice_rows = TaskRecord.objects.filter(task_path="tests.app.retry_tasks.chaos", args__0__in=twice[:500])
    assert twice_rows.count() == min(len(twice), 500)
    interrupted = {"loom.exceptions.WorkerLost",  # in flight when its worker was killed
                   "django.db.utils.OperationalError", "django.db.utils.InterfaceError"}  # DB restart
    for row in twice_rows:
        classes = {e["exception_class_path"] for e in row.errors}
        assert classes and classes <= interrupted, (row.args, classes)
