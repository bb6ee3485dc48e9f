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
- where an idle pickup goes: before the 800/s run, the same warm worker gets 150 ``chain``
  tasks enqueued one by one at random gaps averaging 25 ms. Each is split, on the wall clock,
  into the ``enqueue()`` call (the caller's commit), enqueue's return to the claim (the
  notification's delivery and the fetcher's wake-up: the claim reads its clock just before its
  statement, so this can be below zero when the worker wakes before the caller has its
  reply), the claim to ``task_started`` (the claim statement, handing the task to a parked
  thread, building its result) and ``task_started`` to the body (the signal's receivers, loom's
  ``started`` event among them). Medians.
- drain with task events on and off: 10,000 queued no-ops drained by ``loom worker --threads
  2``, alternately with the default settings and with ``LOOM_EVENTS["TASK_EVENTS"] = False``,
  twice each: the share of a drain that publishing ``started`` and ``finished`` costs.
- start-up and its floor: ``loom worker --threads 2`` launched on one queued no-op, to that
  task's start, against ``python -c pass`` and ``python -c "import django; django.setup()"`` for
  this project with its database driver imported (what any Django-based worker pays before its
  first line). Medians of 5, interleaved.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Pickups split into steps, and their mean gap in seconds (exponential, like bench/run.py's).
CHAIN_SAMPLES = 150
CHAIN_GAP = 0.025
# No-ops per drain with task events on and off.
DRAIN_N = 10_000
# Launches per start-up figure.
STARTUP_RUNS = 5


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

    # -- where an idle pickup goes, then 800/s offered through bulk enqueue ------------------------
    marks = workload.Marks(env["BENCH_MARKS"])
    chain_file = work / "chain"
    os.environ["BENCH_CHAIN"] = env["BENCH_CHAIN"] = str(chain_file)
    backend = task_backends["default"]
    with _worker(env):
        tasks.stamp.enqueue(-1.0)  # warm-up
        _wait_for(marks, 1, 60)
        time.sleep(0.5)
        calls = {}
        for _ in range(CHAIN_SAMPLES):
            t0 = time.time()
            result = tasks.chain.enqueue()
            calls[str(result.id)] = (t0, time.time())
            time.sleep(random.expovariate(1 / CHAIN_GAP))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _lines(chain_file) < CHAIN_SAMPLES:
            time.sleep(0.05)
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
        _wait_for(marks, sent + 1, 30)
    lat = sorted((start - t0) * 1000 for start, t0 in marks.read() if t0 > 0)
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    chain = _chain(chain_file, calls)

    startup = _startup(args.db, tasks, work, env)

    # -- drain with task events on and off --------------------------------------------------
    drains: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):
        for events in (True, False):
            drains[events].append(_drain(args.db, backend, tasks, work, env, events))
    print(f"\n{args.db}: enqueue {enqueue_rate:,.0f}/s vs bare INSERT {insert_rate:,.0f}/s "
          f"(insert/enqueue {insert_rate / enqueue_rate:.2f}x); bulk at {offered:,.0f}/s offered: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} tasks)")
    parts = ", ".join(f"{name} {value:.2f}" for name, value in chain.items() if name != "n")
    print(f"{args.db}: an idle pickup, medians in ms of {chain['n']} tasks: {parts}")
    print(f"{args.db}: start-up, medians of {STARTUP_RUNS} in s: python {startup['python']:.3f}, "
          f"django.setup() with the driver {startup['setup']:.3f}, loom worker launch to first task "
          f"{startup['worker']:.3f} ({startup['worker'] - startup['setup']:.3f} beyond the set-up)")
    on, off = statistics.median(drains[True]), statistics.median(drains[False])
    print(f"{args.db}: drain {on:,.0f}/s with task events, {off:,.0f}/s without "
          f"({off / on:.2f}x; runs {', '.join(f'{r:,.0f}' for r in drains[True])} / "
          f"{', '.join(f'{r:,.0f}' for r in drains[False])})")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _chain(path: Path, calls: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Medians (ms) of each step of the pickups ``path`` recorded (see the module doc)."""
    steps: dict[str, list[float]] = {"enqueue call": [], "to the claim": [], "claim to task_started": [],
                                     "task_started to body": [], "total": []}
    for line in path.read_text().splitlines():
        task_id, claimed, started, body = line.split()
        if task_id not in calls or not float(started):
            continue
        t0, t1 = calls[task_id]
        claimed, started, body = float(claimed), float(started), float(body)
        values = (t1 - t0, claimed - t1, started - claimed, body - started, body - t0)
        for name, value in zip(steps, values, strict=True):
            steps[name].append(value * 1000)
    result = {name: statistics.median(values) for name, values in steps.items() if values}
    result["n"] = len(steps["total"])
    return result


@contextmanager
def _worker(env: dict, **extra: str) -> Iterator[None]:
    """``loom worker --threads 2`` (otherwise the worker's defaults) running for the block."""
    worker = subprocess.Popen([sys.executable, "-m", "django", "loom", "worker", "--threads", "2"],
                              env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        worker.terminate()
        worker.wait(60)


def _wait_for(marks, count: int, seconds: float, step: float = 0.05) -> None:
    """Until ``marks`` (a ``workload.Marks``) holds ``count`` marks, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and marks.count() < count:
        time.sleep(step)


def _clear(db: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE loom_task CASCADE" if db == "postgresql" else "DELETE FROM loom_task")


def _startup(db: str, tasks, work: Path, env: dict) -> dict[str, float]:
    """Medians (s) of the interpreter's start, this project's Django set-up with its database
    driver, and a worker's launch to its first task (see the module doc)."""
    import workload

    driver = "postgresql" if db == "postgresql" else "sqlite3"
    setup = f"import django; django.setup(); import django.db.backends.{driver}.base"
    times: dict[str, list[float]] = {"python": [], "setup": [], "worker": []}
    for run in range(STARTUP_RUNS):
        for name, code in (("python", "pass"), ("setup", setup)):
            began = time.monotonic()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times[name].append(time.monotonic() - began)
        _clear(db)
        tasks.noop.enqueue()
        marks = workload.Marks(str(work / f"start-{run}"))
        began = time.monotonic()
        with _worker(env, BENCH_MARKS=marks.path):
            _wait_for(marks, 1, 30, step=0.005)
        times["worker"].append(marks.read()[0][0] - began)
    return {name: statistics.median(values) for name, values in times.items()}


def _drain(db: str, backend, tasks, work: Path, env: dict, events: bool) -> float:
    """No-ops per second a fresh ``loom worker --threads 2`` drains from a queue of DRAIN_N, with
    loom's task events on or off (first start to last start, as bench/run.py's drain)."""
    import workload

    _clear(db)
    for start in range(0, DRAIN_N, 1000):
        backend.enqueue_many(tasks.noop, [((), {})] * min(1000, DRAIN_N - start))
    marks = workload.Marks(str(work / f"drain-{events}-{time.monotonic_ns()}"))
    with _worker(env, BENCH_MARKS=marks.path, BENCH_TASK_EVENTS="1" if events else "0"):
        _wait_for(marks, DRAIN_N, 60)
    starts = sorted(start for start, _ in marks.read())
    return (len(starts) - 1) / (starts[-1] - starts[0])


if __name__ == "__main__":
    main()
