"""Baseline: the CPU-bound workload on a bare ``multiprocessing`` pool of 2 processes.

No queue, no broker, no database: the same ``workload.burn`` task bodies mapped over a
``Pool(2)`` with ``chunksize=1``, timed the same way as every tool (first start to last end,
from the marks), so "CPU vs pool" in the table compares like with like. Runs in the runner venv.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import workload

PROCESSES = 2


def _init(marks: str) -> None:
    os.environ[workload.MARKS_ENV] = marks


def pool_rate(count: int, n: int, work: Path) -> float | None:
    """Tasks per second of ``count`` ``burn(n)`` calls on a 2-process pool."""
    work.mkdir(parents=True, exist_ok=True)
    marks = work / "marks-pool.bin"
    marks.unlink(missing_ok=True)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(PROCESSES, initializer=_init, initargs=(str(marks),)) as pool:
        pool.map(workload.spin, [1000] * PROCESSES)  # both children up before timing
        pool.map(workload.burn, [n] * count, chunksize=1)
    records = workload.Marks(str(marks)).read()
    marks.unlink(missing_ok=True)
    if not records:
        return None
    span = max(r[1] for r in records) - min(r[0] for r in records)
    return len(records) / span if span > 0 else None
