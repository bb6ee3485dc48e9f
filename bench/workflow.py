"""What a durable step and a workflow hop cost (issue 12's figures), on SQLite or PostgreSQL.

    .venv/bin/python bench/workflow.py [--db sqlite|postgresql] [--steps 500] [--hops 200]

Runs in loom's own virtualenv against the ``djproj`` project (like bench/flow.py); nothing is
written under bench/results.

- step: ``loom.step(name, fn)`` inside a running task's context, first run (``fn`` runs, one
  INSERT and one commit of the user's connection, durable) and replay (the stored result comes
  back, read once per run): microseconds per step.
- hop: a chain of ``--hops`` steps of a no-op task run by ``loom worker --burst --threads 2``:
  from the first step's start to the last step's start, divided by the hops. Each hop is the
  step's completion and the next step's INSERT in one transaction, then the next claim.
  Compared with the same number of independent no-op tasks enqueued at once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="postgresql", choices=("sqlite", "postgresql"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--hops", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loom-workflow-bench-"))
    name = str(work / "db.sqlite3") if args.db == "sqlite" else "bench_loom_workflow"
    env = {**os.environ, "BENCH_TASKS": "loom", "BENCH_DB": args.db, "BENCH_DB_NAME": name,
           "DJANGO_SETTINGS_MODULE": "djproj.settings", "PYTHONPATH": f"{HERE}:{HERE.parent}"}
    os.environ.update(env)
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    if args.db == "postgresql":
        from drivers.base import recreate_pg_database

        recreate_pg_database(name)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    import loom
    from djproj import tasks
    from loom import execution
    from loom.models import TaskRecord, uuid7
    from loom.workflow import call, chain, get_workflow

    # -- durable steps --------------------------------------------------------------------
    token = execution.current_task_id.set(str(uuid7()))
    started = time.perf_counter()
    for i in range(args.steps):
        loom.step(f"s{i}", lambda: {"ok": True})
    first = (time.perf_counter() - started) / args.steps
    from loom import steps

    steps._recorded.set(None)  # a new run of the same task: reads the records once, then replays
    started = time.perf_counter()
    for i in range(args.steps):
        loom.step(f"s{i}", lambda: {"ok": True})
    replay = (time.perf_counter() - started) / args.steps
    execution.current_task_id.reset(token)

    # -- workflow hops --------------------------------------------------------------------
    def drain() -> float:
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "django", "loom", "worker", "--burst", "--threads", "2"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - began

    def spread() -> float:
        starts = sorted(TaskRecord.objects.values_list("last_attempted_at", flat=True))
        return (starts[-1] - starts[0]).total_seconds()

    wf = chain(*[call(tasks.hop) for _ in range(args.hops)]).enqueue()
    drain()
    state = get_workflow(wf.id)
    assert state.status == "SUCCESSFUL", (state.status, [t.status for t in state.tasks if t.status != "SUCCESSFUL"])
    hop = spread() / (args.hops - 1)
    TaskRecord.objects.all().delete()
    from django.tasks import task_backends

    task_backends["default"].enqueue_many(tasks.hop, [((), {})] * args.hops)
    drain()
    independent = spread() / (args.hops - 1)
    print(f"\n{args.db}: durable step, first run {first * 1e6:,.0f} µs, replay {replay * 1e6:,.1f} µs; "
          f"workflow hop {hop * 1e3:.2f} ms (independent tasks: {independent * 1e3:.2f} ms apart)")


if __name__ == "__main__":
    main()
