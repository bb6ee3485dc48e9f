"""Procrastinate on PostgreSQL (database ``bench_procrastinate``), psycopg 3 connector.

General worker: two ``procrastinate worker`` processes (one per core), each ``--concurrency 4``;
jobs are fetched on LISTEN/NOTIFY. CPU worker: two processes with ``--concurrency 1``.
Procrastinate runs a sync task in a thread off its event loop. Bulk enqueue: ``Task.batch_defer``
(one INSERT per call).
"""

from __future__ import annotations

import sys

import procrastinate

import workload
from drivers.base import BULK_CHUNK, PG_DSN, Driver, recreate_pg_database

DB_NAME = "bench_procrastinate"
CONCURRENCY = {"general": "4", "cpu": "1"}

app = procrastinate.App(connector=procrastinate.PsycopgConnector(
    conninfo=f"{PG_DSN} dbname={DB_NAME}"))


@app.task(name="noop")
def noop() -> None:
    workload.noop()


@app.task(name="stamp")
def stamp(t0: float) -> None:
    workload.stamp(t0)


@app.task(name="burn")
def burn(n: int) -> None:
    workload.burn(n)


class ProcrastinateDriver(Driver):
    name = "procrastinate"
    supports_bulk = True
    packages = ("procrastinate", "psycopg")

    def setup(self) -> None:
        import subprocess

        recreate_pg_database(DB_NAME)
        subprocess.run([sys.executable, "-m", "procrastinate", "--app", "drivers.procrastinate.app",
                        "schema", "--apply"], check=True, env=self.worker_env(),
                       capture_output=True, timeout=120)
        app.open()

    def clear(self) -> None:
        import psycopg

        with psycopg.connect(f"{PG_DSN} dbname={DB_NAME}", autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    def enqueue_noop(self) -> None:
        noop.defer()

    def enqueue_noop_bulk(self, count: int) -> None:
        noop.batch_defer(*({} for _ in range(count)))

    def enqueue_stamp(self, t0: float) -> None:
        stamp.defer(t0=t0)

    def enqueue_burn(self, count: int, n: int) -> None:
        for start in range(0, count, BULK_CHUNK):
            burn.batch_defer(*({"n": n} for _ in range(min(BULK_CHUNK, count - start))))

    def worker_commands(self, purpose: str) -> list[list[str]]:
        return [[sys.executable, "-m", "procrastinate", "--app", "drivers.procrastinate.app",
                 "worker", "--concurrency", CONCURRENCY[purpose]] for _ in range(2)]

    def teardown(self) -> None:
        app.close()

    def describe(self) -> dict:
        return {"broker": "postgresql",
                "setup": "2 × `procrastinate worker --concurrency 4` (LISTEN/NOTIFY)",
                "cpu_setup": "2 × `procrastinate worker --concurrency 1`"}


DRIVER = ProcrastinateDriver
