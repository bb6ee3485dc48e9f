"""Where a no-op task's CPU time goes in the loom worker: the per-task cost breakdown.

    .venv/bin/python bench/breakdown.py [--db sqlite|postgresql] [-n 20000]

Runs in loom's own virtualenv against the ``djproj`` project (like bench/flow.py). First a real
worker (``loom.worker.Worker`` in this process, 2 threads, ``--burst``) drains N queued no-ops:
the CPU time of the whole process (user + system, every thread) per task is the total. Then the
hot path's parts run alone, one after the other in one thread, on another N tasks, each timed
with that thread's CPU clock:

- claim: ``Store.claim`` of 100 rows at a time (the statement and converting its rows);
- run: ``execution.run`` less the body (Django's task_started/task_finished signals and their
  receivers, the result objects, JSON normalisation of the return value);
- body: the task function itself (``workload.noop``: one ``os.write`` of a mark);
- complete: ``Store.complete_many`` of 100 outcomes at a time;
- the rest of the total: handing tasks between threads (fetcher, executor, completer), waking
  them, leases and heartbeats, garbage collection.

(A profiler cannot give this split: cProfile on Python 3.12+ sees every thread but times them
on one clock, so waits in one thread are charged to another.)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loom-breakdown-"))
    name = str(work / "db.sqlite3") if args.db == "sqlite" else "bench_loom_breakdown"
    os.environ.update({"BENCH_TASKS": "loom", "BENCH_DB": args.db, "BENCH_DB_NAME": name,
                       "DJANGO_SETTINGS_MODULE": "djproj.settings"})
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    if args.db == "postgresql":
        from drivers.base import recreate_pg_database

        recreate_pg_database(name)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.tasks import task_backends

    from djproj import tasks
    from loom import databases
    from loom.worker import Worker

    os.environ["BENCH_MARKS"] = str(work / "marks")
    backend = task_backends["default"]
    databases.prepare_worker()

    def fill() -> None:
        for first in range(0, args.n, 1000):
            backend.enqueue_many(tasks.noop, [((), {})] * min(1000, args.n - first))

    def worker_cpu() -> float:
        fill()
        began = cpu()
        Worker(threads=2, burst=True).run()
        return (cpu() - began) / args.n

    worker_cpu()  # warm-up: imports, connections, caches
    total = worker_cpu()

    from django.utils import timezone

    from loom import execution

    store = backend.store
    fill()
    parts: dict[str, float] = {}
    clock = time.thread_time
    began, claimed = clock(), []
    while True:
        now = timezone.now()
        got = store.claim("breakdown", None, 100, now, now + timedelta(seconds=300))
        if not got:
            break
        claimed += got
    parts["claim"] = clock() - began
    began = clock()
    outcomes = [execution.run(c)[0] for c in claimed]
    parts["run"] = clock() - began
    body = tasks.noop.func
    began = clock()
    for _ in claimed:
        body()
    parts["body"] = clock() - began
    parts["run"] -= parts["body"]
    began = clock()
    for first in range(0, len(outcomes), 100):
        store.complete_many("breakdown", outcomes[first:first + 100])
    parts["complete"] = clock() - began
    n = len(claimed)
    per = {part: seconds / n for part, seconds in parts.items()}
    per["hand-offs between threads, wake-ups, leases, GC (the rest)"] = total - sum(per.values())
    print(f"\n{args.db}: {total * 1e6:.0f} µs of CPU per no-op task in a worker "
          f"(one process, 2 threads, N = {args.n:,})\n")
    print("| part | µs per task | share |\n|---|--:|--:|")
    for part, seconds in per.items():
        print(f"| {part} | {seconds * 1e6:.0f} | {seconds / total:.0%} |")

if __name__ == "__main__":
    main()
