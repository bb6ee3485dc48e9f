"""Sustained load with a long reader: a steady 1,000 tasks/s on PostgreSQL for 20 minutes while,
every few minutes, another client holds a transaction open for 2 minutes.

    .venv/bin/python bench/sustained.py [--minutes 20] [--rate 1000] [--every 300] [--hold 120]

What an analytics query or a forgotten ``psql`` session does to a queue table: while its snapshot
is open, VACUUM can remove no row version that died after it began, so every claim and every
outcome (each an UPDATE) leaves a dead tuple behind until it ends. The question is whether the
backlog stays bounded while that happens, and whether it drains once the transaction ends.

- A default ``manage.py loom worker`` (one process per core, 8 threads each) on a PostgreSQL server
  of its own (tests/servers.py: a fresh cluster with PostgreSQL's default settings, autovacuum on,
  on a loopback port, stopped at the end), the suite's settings, retention as default.
- This process enqueues no-op tasks at ``--rate`` per second (``enqueue_many`` of rate/100 tasks
  every 10 ms, as a busy web tier would in aggregate).
- The long reader: ``BEGIN ISOLATION LEVEL REPEATABLE READ`` and a read of ``loom_task``, held for
  ``--hold`` seconds, first after ``--every`` / 2 seconds, then every ``--every`` seconds.
- Every 5 s: READY backlog, tasks finished since the last sample, ``n_dead_tup`` and ``n_live_tup``
  of ``loom_task`` (pg_stat_user_tables) and its total size.

Writes bench/results/sustained-<stamp>.json and .md, and the plot .png (drawn with the bench
runner's matplotlib, bench/.venvs/runner, made by ``make bench``; without it the plot is skipped,
saying so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATABASE = "bench_sustained"
SAMPLE_EVERY = 5.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--every", type=float, default=300)
    parser.add_argument("--hold", type=float, default=120)
    parser.add_argument("--plot", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot:
        plot(Path(args.plot))
        return
    sys.path.insert(0, str(ROOT))
    from tests.servers import PrivatePostgres

    server = PrivatePostgres(durable=True).start()
    try:
        server.psql(f"CREATE DATABASE {DATABASE}")
        measure(args, server)
    finally:
        server.stop()


def measure(args, server) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "LOOM_TEST_DB": "postgresql",
           "LOOM_TEST_DB_NAME": DATABASE, "LOOM_PG_HOST": server.host, "LOOM_PG_PORT": str(server.port),
           "PYTHONPATH": str(ROOT)}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    worker = subprocess.Popen([sys.executable, "-m", "django", "loom", "worker"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        data = run(args, server)
    finally:
        worker.terminate()
        worker.wait(120)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = HERE / "results" / f"sustained-{stamp}.json"
    out.write_text(json.dumps(data, indent=1))
    summary = summarise(data)
    out.with_suffix(".md").write_text(f"# bench/sustained.py, {stamp}\n\n{summary}\n")
    print("\n" + summary)
    runner = HERE / ".venvs" / "runner" / "bin" / "python"
    if runner.exists():
        subprocess.run([str(runner), __file__, "--plot", str(out)], check=True)
        print(f"plot: {out.with_suffix('.png').relative_to(ROOT)}")
    else:
        print("no plot: bench/.venvs/runner is missing (`make bench` makes it)")


def run(args, server) -> dict:
    from django.db import connections

    from loom.compat import task_backends
    from tests.app import tasks

    backend = task_backends["default"]
    seconds = args.minutes * 60
    stop = threading.Event()
    holds: list[tuple[float, float]] = []
    sent = [0]
    began = time.monotonic()

    def produce() -> None:
        per_tick = max(1, args.rate // 100)
        next_at = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            backend.enqueue_many(tasks.noop, [((), {})] * per_tick)
            sent[0] += per_tick
            next_at += 0.010
        connections.close_all()

    def long_reader() -> None:
        import psycopg

        at = args.every / 2
        while not stop.wait(max(0.0, began + at - time.monotonic())):
            with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname=DATABASE,
                                 autocommit=True) as conn:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                conn.execute("SELECT count(*) FROM loom_task WHERE status = 'SUCCESSFUL'").fetchone()
                start = time.monotonic() - began
                stop.wait(args.hold)
                conn.execute("COMMIT")
                holds.append((start, time.monotonic() - began))
            at += args.every

    samples = []
    threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=long_reader, daemon=True)]
    for thread in threads:
        thread.start()
    with connections["default"].cursor() as cursor:
        while True:
            elapsed = time.monotonic() - began
            producing = elapsed < seconds
            if not producing:
                stop.set()
            cursor.execute("SELECT count(*) FROM loom_task WHERE status = 'READY'")
            ready = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM loom_task WHERE status IN ('SUCCESSFUL', 'FAILED') "
                           "AND finished_at > now() - make_interval(secs => %s)", [SAMPLE_EVERY])
            finished = cursor.fetchone()[0]
            cursor.execute("SELECT n_dead_tup, n_live_tup, pg_total_relation_size('loom_task') "
                           "FROM pg_stat_user_tables WHERE relname = 'loom_task'")
            dead, live, size = cursor.fetchone()
            samples.append({"t": elapsed, "ready": ready, "finished_per_s": finished / SAMPLE_EVERY,
                            "dead": dead, "live": live, "mb": size / 2**20, "sent": sent[0]})
            print(f"{elapsed:6.0f}s backlog {ready:>7,} done/s {samples[-1]['finished_per_s']:>6,.0f} "
                  f"dead {dead:>9,} size {size / 2**20:7.0f} MB", flush=True)
            if not producing and (ready == 0 or elapsed > seconds + 300):
                break
            time.sleep(max(0.0, began + len(samples) * SAMPLE_EVERY - time.monotonic()))
    for thread in threads:
        thread.join(args.hold + 10)
    return {"rate": args.rate, "minutes": args.minutes, "hold": args.hold, "every": args.every,
            "sent": sent[0], "offered_per_s": sent[0] / seconds, "holds": holds, "samples": samples}


def summarise(data: dict) -> str:
    samples = data["samples"]
    lines = [f"{data['minutes']:g} minutes at {data['offered_per_s']:,.0f} tasks/s offered "
             f"({data['sent']:,} tasks); a {data['hold']:g} s transaction every {data['every']:g} s.", "",
             "| window | backlog max | backlog at its end | dead tuples max | table MB at its end |",
             "|---|--:|--:|--:|--:|"]
    edges = sorted({0.0, *[t for h in data["holds"] for t in h], samples[-1]["t"]})
    for a, b in zip(edges, edges[1:], strict=False):
        window = [s for s in samples if a <= s["t"] <= b]
        if not window:
            continue
        held = any(h[0] <= a + 1 and b <= h[1] + 1 for h in data["holds"])
        lines.append(f"| {a:.0f}-{b:.0f} s{' (long transaction open)' if held else ''} | "
                     f"{max(s['ready'] for s in window):,} | {window[-1]['ready']:,} | "
                     f"{max(s['dead'] for s in window):,} | {window[-1]['mb']:.0f} |")
    return "\n".join(lines)


def plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    s = data["samples"]
    t = [x["t"] / 60 for x in s]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(t, [x["ready"] for x in s], label="READY backlog")
    axes[0].plot(t, [x["finished_per_s"] for x in s], label="finished per second")
    axes[1].plot(t, [x["dead"] for x in s], color="tab:red", label="dead tuples (n_dead_tup)")
    axes[1].plot(t, [x["live"] for x in s], color="tab:gray", label="live tuples")
    axes[2].plot(t, [x["mb"] for x in s], color="tab:purple", label="loom_task total size, MB")
    for ax in axes:
        for start, end in data["holds"]:
            ax.axvspan(start / 60, end / 60, color="orange", alpha=0.2)
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    axes[2].set_xlabel("minutes (orange: another client's transaction is open)")
    fig.suptitle(f"loom on PostgreSQL, {data['offered_per_s']:,.0f} tasks/s offered for {data['minutes']:g} min")
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=90)


if __name__ == "__main__":
    main()
