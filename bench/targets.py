"""Two of loom's own targets that need no peer: enqueue against a bare INSERT, and pickup at
800 tasks/s offered through bulk enqueue.

    .venv/bin/python bench/targets.py [--db postgresql|sqlite]

Runs in loom's own virtualenv against the ``djproj`` project (like bench/flow.py).

- enqueue vs INSERT: ``task.enqueue()`` one at a time in autocommit, against a bare single-row
  INSERT of the same row into the same table (``loom_task``, its indexes and trigger included)
  through the same Django connection: rows per second each, 3 s each, alternated 3 times.
- 800/s bulk: a warm ``loom worker --threads 2`` while this process calls ``enqueue_many`` with
  8 ``stamp(t0)`` tasks every 10 ms for 5 s; latency = the task's start - the call's start,
  p50 / p99.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="postgresql", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loom-targets-"))
    name = str(work / "db.sqlite3") if args.db == "sqlite" else "bench_loom_targets"
    env = {**os.environ, "BENCH_TASKS": "loom", "BENCH_DB": args.db, "BENCH_DB_NAME": name,
           "DJANGO_SETTINGS_MODULE": "djproj.settings", "PYTHONPATH": f"{HERE}:{HERE.parent}",
           "BENCH_MARKS": str(work / "marks")}
    os.environ.update(env)
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    if args.db == "postgresql":
        from drivers.base import recreate_pg_database

        recreate_pg_database(name)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection
    from django.tasks import task_backends

    import workload
    from djproj import tasks
    from loom.models import TaskRecord

    # -- enqueue vs a bare INSERT -----------------------------------------------------------
    insert = ("INSERT INTO loom_task (id, task_path, backend, queue_name, priority, args, kwargs, "
              "available_at, enqueued_at, max_attempts, status, attempts, worker_ids, errors, "
              "cancel_requested, progress_message, unique_replace, atomic) "
              "VALUES (%s, 'djproj.tasks.noop', 'default', 'default', 0, '[]', '{}', %s, %s, 1, 'READY', 0, "
              "'[]', '[]', FALSE, '', FALSE, FALSE)")
    from django.utils import timezone

    from loom.models import uuid7

    def bare() -> None:
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(insert, [TaskRecord._meta.pk.get_db_prep_value(uuid7(), connection), now, now])

    def rate(call, seconds: float = 3.0) -> float:
        done, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            call()
            done += 1
        return done / (time.perf_counter() - began)

    enqueues, inserts = [], []
    for _ in range(3):
        inserts.append(rate(bare))
        enqueues.append(rate(tasks.noop.enqueue))
    TaskRecord.objects.all().delete()
    enqueue_rate, insert_rate = statistics.median(enqueues), statistics.median(inserts)

    # -- 800/s offered through bulk enqueue ------------------------------------------------------
    marks = work / "marks"
    worker = subprocess.Popen([sys.executable, "-m", "django", "loom", "worker", "--threads", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        backend = task_backends["default"]
        tasks.stamp.enqueue(-1.0)  # warm-up
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (marks.exists() and marks.stat().st_size):
            time.sleep(0.05)
        time.sleep(0.5)
        sent, began = 0, time.monotonic()
        next_at = began
        while time.monotonic() - began < 5.0:
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            t0 = time.monotonic()
            backend.enqueue_many(tasks.stamp, [((t0,), {})] * 8)
            sent += 8
            next_at += 0.010
        offered = sent / (time.monotonic() - began)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and marks.stat().st_size // workload.RECORD.size < sent + 1:
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(60)
    data = marks.read_bytes()
    records = [workload.RECORD.unpack_from(data, i) for i in range(0, len(data), workload.RECORD.size)]
    lat = sorted((start - t0) * 1000 for start, t0 in records if t0 > 0)
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"\n{args.db}: enqueue {enqueue_rate:,.0f}/s vs bare INSERT {insert_rate:,.0f}/s "
          f"(insert/enqueue {insert_rate / enqueue_rate:.2f}x); bulk at {offered:,.0f}/s offered: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} tasks)")


if __name__ == "__main__":
    main()
