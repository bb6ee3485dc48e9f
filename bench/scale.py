"""Cost as the table grows: claim+complete drain, pickup, and the dashboard, at 10k to 10M rows.

    .venv/bin/python bench/scale.py [--db postgresql sqlite mysql] [--sizes 10000 1000000 10000000]

For each database, the table is grown in place to each size in turn (mostly finished rows, as a
queue looks after months of use, with a READY backlog of 100,000, or half the table when it is
smaller), and at each size this measures, in one process on one connection:

- **drain**: 5,000 of the backlog's tasks (three times; the median) claimed (the worker's batch size at a time), run (a
  no-op, through loom's own ``execute``) and completed (``complete_many``), as the worker's
  fetcher and completer do, without the threads: tasks per second. This is the database's cost
  per task as the table grows; the full worker adds its constant hand-offs on top.
- **pickup** (enqueue to claimed): 200 times, one high-priority task enqueued and claimed at
  once: p50 / p99 in ms (the notification and thread hand-off of a real worker add a constant).
- **archive** (PostgreSQL): the finished rows are first moved into archive tables, as the
  leader's archiver does in use (``loom.store.archive``): rows per second of that move.
- **dashboard**: every page and ``/loom/metrics`` fetched 20 times by a signed-in staff user
  (Django's test client, the real views and templates): p95 in ms, and the first (cold) fetch.

The finished rows are made by the database itself (one INSERT ... SELECT per million rows) with
time-ordered ids, as loom writes them. It uses the suite's settings (tests.settings, startproject's
SQLite settings) on a database of its own: ``bench_scale`` on the local PostgreSQL and MariaDB, a
file in a temporary directory for SQLite. Results go to bench/results/scale-<stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DRAIN = 5_000
BACKLOG = 100_000
SAMPLES = 200
PAGE_FETCHES = 20
CHUNK = 1_000_000
PRUNE_BATCH_NOTE = {"postgresql": "dropping archive tables",
                    "sqlite": "batches of loom.store.operations.PRUNE_BATCH_SQLITE rows",
                    "mysql": "batches of loom.store.operations.PRUNE_BATCH rows"}


def child(db: str, sizes: list[int], prune: bool = True) -> list[dict]:
    """Runs in a process of its own per database (settings are chosen by the environment)."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    if connection.vendor == "sqlite":
        from loom.databases import _use_wal

        _use_wal("default", connection.settings_dict["NAME"], 5.0)  # as the first worker leaves the file
    from loom.compat import task_backends

    backend = task_backends["default"]
    store = backend.store
    results = []
    present = 0
    for size in sizes:
        began = time.perf_counter()
        ready = min(BACKLOG, size // 2)
        present = grow(connection, size - ready, present)
        top_up(backend, ready)
        if connection.vendor == "postgresql":
            row_archive = archive_all(backend)
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE loom_task")
                for name, _, _ in store.archive_tables():  # autovacuum's work in use (it is off here)
                    cursor.execute(f"VACUUM ANALYZE {name}")
                cursor.execute("CHECKPOINT")  # the fill's writes are not flushed during the measurement
        elif connection.vendor == "mysql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE TABLE loom_task")
                cursor.fetchall()
        filled = time.perf_counter() - began
        row = {"db": db, "size": size, "ready": ready, "fill_s": filled}
        if connection.vendor == "postgresql":
            row["archive"] = row_archive
        rounds = []
        for _ in range(3):
            top_up(backend, ready)
            rounds.append(drain(store, backend))
        row["drain"] = statistics.median(rounds)
        row["pickup_p50"], row["pickup_p99"] = pickup(store)
        row["pages"] = pages()
        row["table_mb"] = table_mb(connection)
        if prune and size == max(sizes):
            row["prune"] = prune_under_claims(store)
        results.append(row)
        print(f"  {db} {size:>10,} rows: drain {row['drain']:,.0f}/s, pickup p50 {row['pickup_p50']:.2f} ms "
              f"p99 {row['pickup_p99']:.2f} ms, slowest page p95 {max(p95 for p95, _ in row['pages'].values()):.0f} ms "
              f"(filled in {filled:.0f}s, {row['table_mb']:.0f} MB)", flush=True)
    return results


def grow(connection, finished: int, present: int) -> int:
    """Add finished rows until the table holds ``finished`` of them; returns the new count."""
    base_ms = int((time.time() - 90 * 86400) * 1000)  # three months ago, 10 rows a millisecond on
    while present < finished:
        n = min(CHUNK, finished - present)
        with connection.cursor() as cursor:
            sql = FILL[connection.vendor].format(start=present, stop=present + n, base=base_ms, columns=_COLUMNS)
            cursor.execute(sql)
        present += n
    return present


# Finished rows made by the database: ids are time-ordered (48 bits of milliseconds first, as
# uuid7), enqueued over the last three months; every tenth FAILED, a few hundred bytes each.
_COLUMNS = ("id, task_path, backend, queue_name, priority, status, args, kwargs, available_at, enqueued_at, "
            "started_at, finished_at, last_attempted_at, attempts, max_attempts, worker_ids, errors, return_value, "
            "cancel_requested, progress_message, unique_replace, atomic")
FILL = {
    "postgresql": """
        INSERT INTO loom_task ({columns})
        SELECT (lpad(to_hex({base}::bigint + i / 10), 12, '0') || '7' || substr(md5(i::text), 1, 3)
                || '8' || substr(md5(i::text), 4, 15))::uuid,
               'tests.app.tasks.noop', 'default', 'default', 0,
               CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END, '[1, 2]', '{{}}',
               t, t, t, t + interval '5 ms', t, 1, 1, '["bench-worker-1"]',
               CASE WHEN i % 10 = 0 THEN {error}
                    ELSE '[]' END::json,
               '3', false, '', false, false
        FROM generate_series({start}, {stop} - 1) AS i,
             LATERAL (SELECT to_timestamp(({base}::bigint + i / 10) / 1000.0) AS t) AS ts
    """,
    "sqlite": """
        WITH RECURSIVE s(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {stop})
        INSERT INTO loom_task ({columns})
        SELECT printf('%012x', {base} + i / 10) || '7' || lower(substr(hex(randomblob(10)), 1, 19)),
               'tests.app.tasks.noop', 'default', 'default', 0,
               CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END, '[1, 2]', '{{}}',
               t, t, t, t, t, 1, 1, '["bench-worker-1"]',
               CASE WHEN i % 10 = 0 THEN {error}
                    ELSE '[]' END,
               '3', 0, '', 0, 0
        FROM (SELECT i, strftime('%Y-%m-%d %H:%M:%f', ({base} + i / 10) / 1000.0, 'unixepoch') AS t FROM s)
    """,
    "mysql": """
        INSERT INTO loom_task ({columns})
        SELECT LOWER(CONCAT(LPAD(HEX({base} + i DIV 10), 12, '0'), '7', SUBSTRING(MD5(i), 1, 19))),
               'tests.app.tasks.noop', 'default', 'default', 0,
               IF(i % 10 = 0, 'FAILED', 'SUCCESSFUL'), '[1, 2]', '{{}}',
               t, t, t, t, t, 1, 1, '["bench-worker-1"]',
               IF(i % 10 = 0, {error}, '[]'),
               '3', 0, '', 0, 0
        FROM (SELECT seq AS i, FROM_UNIXTIME(({base} + seq DIV 10) / 1000.0) AS t
              FROM seq_{start}_to_{stop}) AS s WHERE i < {stop}
    """,
}


_ERROR = """'[{{"exception_class_path": "builtins.ValueError", "traceback": "ValueError: boom"}}]'"""
FILL = {vendor: sql.replace("{error}", _ERROR) for vendor, sql in FILL.items()}


def archive_all(backend) -> tuple[int, float]:
    """PostgreSQL: move the finished rows the fill added into archive tables, as the leader's
    archiver does (loom.store.archive), so the table looks as it does in use; returns how many
    moved and how long that took (the archiver's cost per row)."""
    from django.utils import timezone

    from loom.store.archive import slice_seconds

    began = time.perf_counter()
    moved = backend.store.archive(timezone.now(), slice_seconds(backend.config.retention), budget=1e9)
    seconds = time.perf_counter() - began
    print(f"  archived {moved:,} finished rows in {seconds:.1f}s ({moved / max(seconds, 1e-9):,.0f} rows/s)",
          flush=True)
    return moved, seconds


def top_up(backend, ready: int) -> None:
    from loom.models import TaskRecord
    from tests.app import tasks

    missing = ready - TaskRecord.objects.filter(status="READY").count()
    while missing > 0:
        n = min(missing, 10_000)
        backend.enqueue_many(tasks.noop, [((), {})] * n)
        missing -= n


def drain(store, backend) -> float:
    from django.utils import timezone

    from loom.execution import execute

    batch = backend.config.batch_size
    done, began = 0, time.perf_counter()
    while done < DRAIN:
        now = timezone.now()
        claimed = store.claim("bench-scale", None, min(batch, DRAIN - done), now, now + dt.timedelta(seconds=30))
        if not claimed:
            raise RuntimeError("the backlog ran out before the drain was measured")
        store.complete_many("bench-scale", [execute(c) for c in claimed])
        done += len(claimed)
    return done / (time.perf_counter() - began)


def round_trip(store) -> float:
    """Enqueue one high-priority task and claim it at once (then complete it): milliseconds from
    the enqueue call to the claimed row."""
    from django.utils import timezone

    from loom.execution import execute
    from tests.app import tasks

    began = time.perf_counter()
    result = tasks.noop.using(priority=10).enqueue()
    now = timezone.now()
    [claimed] = store.claim("bench-scale", None, 1, now, now + dt.timedelta(seconds=30))
    took = (time.perf_counter() - began) * 1000
    assert claimed.id == result.id
    store.complete_many("bench-scale", [execute(claimed)])
    return took


def pickup(store) -> tuple[float, float]:
    samples = sorted(round_trip(store) for _ in range(SAMPLES))
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def prune_under_claims(store) -> dict:
    """Prune every finished row (the pruner's own call) while this thread keeps enqueueing and
    claiming one task at a time: how long the prune takes, and whether claims wait for it."""
    from django.db import connections
    from django.utils import timezone


    done = threading.Event()
    outcome: dict = {}

    def prune() -> None:
        began = time.perf_counter()
        try:
            outcome["rows"] = store.prune(timezone.now() + dt.timedelta(days=1))
        finally:
            outcome["seconds"] = time.perf_counter() - began
            connections.close_all()
            done.set()

    samples = []
    thread = threading.Thread(target=prune)
    thread.start()
    while not done.is_set():
        samples.append(round_trip(store))
        time.sleep(0.01)
    thread.join()
    samples.sort()
    outcome["claims"] = len(samples)
    outcome["claim_p50"] = statistics.median(samples)
    outcome["claim_max"] = samples[-1]
    print(f"  pruned {outcome['rows']:,} finished rows in {outcome['seconds']:.1f}s; {len(samples)} enqueue+claim "
          f"meanwhile: p50 {outcome['claim_p50']:.1f} ms, max {outcome['claim_max']:.1f} ms", flush=True)
    return outcome


def pages() -> dict[str, tuple[float, float]]:
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    from loom.models import TaskRecord

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True,
                                                                                  "is_superuser": True})
    client = Client()
    client.force_login(user)
    some = TaskRecord.objects.filter(status="FAILED").order_by("-enqueued_at").values_list("pk", flat=True)[:1][0]
    urls = {"overview": "/loom/", "tasks": "/loom/tasks/", "failed tasks": "/loom/tasks/?status=FAILED",
            "task page": f"/loom/tasks/{some}/", "workers": "/loom/workers/", "schedules": "/loom/schedules/",
            "metrics": "/loom/metrics"}
    timings = {}
    with override_settings(ROOT_URLCONF="tests.plain_urls"):
        for name, url in urls.items():
            took = []
            for _ in range(PAGE_FETCHES):
                began = time.perf_counter()
                response = client.get(url)
                took.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            cold = took[0]
            took.sort()
            timings[name] = (took[int(len(took) * 0.95) - 1], cold)
    return timings


def table_mb(connection) -> float:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_total_relation_size('loom_task')")
        elif connection.vendor == "mysql":
            cursor.execute("SELECT data_length + index_length FROM information_schema.tables "
                           "WHERE table_schema = DATABASE() AND table_name = 'loom_task'")
        else:
            cursor.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
        return cursor.fetchone()[0] / 2**20


def prepare(db: str, work: Path) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "LOOM_TEST_DB": db,
           "PYTHONPATH": str(ROOT), "LOOM_EVENTS_BACKEND": "memory"}
    if db == "postgresql":
        for sql in ("DROP DATABASE IF EXISTS bench_scale", "CREATE DATABASE bench_scale"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql], check=True)
        env["LOOM_TEST_DB_NAME"] = "bench_scale"
    elif db == "mysql":
        subprocess.run(["mariadb", "-h", "127.0.0.1", "-uroot", "-e",
                        "DROP DATABASE IF EXISTS bench_scale; CREATE DATABASE bench_scale CHARACTER SET utf8mb4"],
                       check=True)
        env["LOOM_TEST_DB_NAME"] = "bench_scale"
    else:
        env["LOOM_TEST_DB_NAME"] = str(work / "scale.sqlite3")
    return env


def cleanup(db: str) -> None:
    if db == "postgresql":
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc",
                        "DROP DATABASE IF EXISTS bench_scale"])
    elif db == "mysql":
        subprocess.run(["mariadb", "-h", "127.0.0.1", "-uroot", "-e", "DROP DATABASE IF EXISTS bench_scale"])


def report(rows: list[dict]) -> str:
    lines = ["| database | rows | READY | drain /s | vs smallest | pickup p50 / p99 ms | table MB |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    first: dict[str, float] = {}
    for r in rows:
        first.setdefault(r["db"], r["drain"])
        lines.append(f"| {r['db']} | {r['size']:,} | {r['ready']:,} | {r['drain']:,.0f} | "
                     f"{r['drain'] / first[r['db']]:.2f} | {r['pickup_p50']:.2f} / {r['pickup_p99']:.2f} | "
                     f"{r['table_mb']:,.0f} |")
    for r in rows:
        if r.get("archive") and r["archive"][0]:
            moved, seconds = r["archive"]
            lines += ["", f"{r['db']}, {r['size']:,} rows: the archiver moved {moved:,} finished rows into archive "
                          f"tables in {seconds:.1f} s ({moved / seconds:,.0f} rows/s)."]
    for r in rows:
        if "prune" in r:
            p = r["prune"]
            how = PRUNE_BATCH_NOTE[r["db"]]
            lines += ["", f"{r['db']}, {r['size']:,} rows: pruning {p['rows']:,} finished rows took "
                          f"{p['seconds']:.1f} s ({p['rows'] / p['seconds']:,.0f} rows/s, {how}); "
                          f"{p['claims']:,} enqueue+claim round trips meanwhile: p50 {p['claim_p50']:.1f} ms, "
                          f"slowest {p['claim_max']:.1f} ms."]
    names = list(rows[0]["pages"])
    lines += ["", "Dashboard and metrics, p95 ms over 20 fetches (first fetch in brackets):", "",
              "| database | rows | " + " | ".join(names) + " |", "|---|--:|" + "--:|" * len(names)]
    for r in rows:
        cells = " | ".join(f"{r['pages'][n][0]:.0f} ({r['pages'][n][1]:.0f})" for n in names)
        lines.append(f"| {r['db']} | {r['size']:,} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", nargs="+", default=["postgresql", "sqlite", "mysql"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--no-prune", action="store_true", help="leave out the prune at the largest size")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import json

        sys.path.insert(0, str(ROOT))
        print("RESULT " + json.dumps(child(args.child, sorted(args.sizes), not args.no_prune)), flush=True)
        return
    import json

    rows: list[dict] = []
    text = ""
    work = Path(tempfile.mkdtemp(prefix="loom-scale-"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = HERE / "results" / f"scale-{stamp}.md"
    for db in args.db:
        env = prepare(db, work)
        print(f"{db}:", flush=True)
        try:
            extra = ["--no-prune"] if args.no_prune else []
            proc = subprocess.Popen([sys.executable, __file__, "--child", db, "--sizes", *map(str, args.sizes), *extra],
                                    env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    rows += json.loads(line[7:])
                else:
                    print(line, end="", flush=True)
            if proc.wait():
                print(f"{db}: the measuring process failed", flush=True)
        finally:
            cleanup(db)
        if rows:
            text = report(rows)
            out.write_text(f"# bench/scale.py, {stamp}\n\n{text}\n")
    print("\n" + text)
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
