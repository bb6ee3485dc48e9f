"""What flow control costs: drain rate of the same no-op tasks, plain and flow-controlled.

    .venv/bin/python bench/flow.py [--db sqlite|postgresql] [-n 5000]

Runs in loom's own virtualenv (not ``make bench``: no peer has these features for free, so there
is nothing to put side by side; the comparison is loom against itself without them). For each
shape it enqueues N no-ops (``djproj``'s ``noop``, which leaves a start mark), runs ``loom worker
--burst --threads 2`` with the default process count, and reports (N - 1) / (last start - first
start), worker boot not counted:

- plain: no keys, no limits (the plain claim: one statement);
- concurrency keys: 100 keys of at most 2 running each (the flow claim, serialised);
- fair keys: a tenant with 90% of the tasks and nine with the rest;
- queue limit: the queue at most 4 running at once (OPTIONS-free: ``loom.queues.set_limits``).

Prints one Markdown table; nothing is written under bench/results.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORD = struct.Struct("<dd")


def starts(path: Path) -> list[float]:
    data = path.read_bytes()
    return sorted(RECORD.unpack_from(data, i)[0] for i in range(0, len(data) - len(data) % RECORD.size, RECORD.size))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loom-flow-bench-"))
    name = str(work / "db.sqlite3") if args.db == "sqlite" else "bench_loom_flow"
    env = {**os.environ, "BENCH_TASKS": "loom", "BENCH_DB": args.db, "BENCH_DB_NAME": name,
           "DJANGO_SETTINGS_MODULE": "djproj.settings", "PYTHONPATH": str(HERE)}
    os.environ.update(env)
    sys.path.insert(0, str(HERE))
    if args.db == "postgresql":
        from drivers.base import recreate_pg_database

        recreate_pg_database(name)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection
    from django.tasks import task_backends

    from djproj import tasks
    from loom import queues

    backend = task_backends["default"]
    n = args.n
    shapes = {
        "plain": lambda i: tasks.noop,
        "concurrency keys (100 keys, 2 each)": lambda i: tasks.noop.using(concurrency_key=f"k{i % 100}",
                                                                        concurrency_limit=2),
        "fair keys (one tenant 90%)": lambda i: tasks.noop.using(fair_key="big" if i % 10 else f"t{i % 9}"),
        "queue limit (4 at once)": lambda i: tasks.noop,
    }
    rows = []
    for shape, make in shapes.items():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM loom_task")
        if shape.startswith("queue limit"):
            queues.set_limits("default", concurrency=4)
        else:
            queues.reset_limits("default")
        groups: dict = {}
        for i in range(n):
            groups.setdefault(make(i), []).append(((), {}))
        for task, calls in groups.items():
            for first in range(0, len(calls), 1000):
                backend.enqueue_many(task, calls[first:first + 1000])
        marks = work / f"marks-{len(rows)}"
        marks.touch()
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "django", "loom", "worker", "--burst", "--threads", "2"],
                       env={**env, "BENCH_MARKS": str(marks)}, check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - began
        seen = starts(marks)
        rate = (len(seen) - 1) / (seen[-1] - seen[0]) if len(seen) > 1 and seen[-1] > seen[0] else 0.0
        rows.append((shape, len(seen), rate, wall))
    queues.reset_limits("default")
    plain = rows[0][2] or 1.0
    print(f"\n{args.db}, N = {n}, `loom worker --burst --threads 2`\n")
    print("| shape | ran | drain/s | vs plain | wall s (with boot) |")
    print("|---|---:|---:|---:|---:|")
    for shape, ran, rate, wall in rows:
        print(f"| {shape} | {ran} | {rate:,.0f} | {rate / plain:.2f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
