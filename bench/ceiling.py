"""Ceiling: what this PostgreSQL does with one task's writes and nothing else, via ``pgbench``.

A task's life is taken as three autocommit statements (``pgbench/task.sql``): a single-row
INSERT, an UPDATE to RUNNING, an UPDATE to SUCCESSFUL, on a table shaped like a queue table with
a partial READY index (``pgbench/schema.sql``). 8 clients, 2 pgbench threads. The figure is
pgbench's tps, which here is tasks per second: an upper bound for any tool that writes each
task separately, and the bar that batching (claiming and completing many rows per statement) can
clear. Database ``bench_pgbench``, recreated each time and dropped by the orchestrator.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
DB_NAME = "bench_pgbench"
DSN = "host=127.0.0.1 port=5432 user=postgres"
CLIENTS = 8
THREADS = 2


def pgbench_tps(seconds: int) -> float | None:
    if shutil.which("pgbench") is None:
        return None
    with psycopg.connect(DSN + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    with psycopg.connect(f"{DSN} dbname={DB_NAME}", autocommit=True) as conn:
        conn.execute((HERE / "pgbench" / "schema.sql").read_text())
    out = subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-n",
         "-c", str(CLIENTS), "-j", str(THREADS), "-T", str(seconds),
         "-f", str(HERE / "pgbench" / "task.sql"), DB_NAME],
        capture_output=True, text=True, timeout=seconds + 60)
    found = re.search(r"tps = ([0-9.]+)", out.stdout)
    return float(found.group(1)) if found else None


def drop_database() -> None:
    with psycopg.connect(DSN + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
