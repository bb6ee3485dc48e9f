"""The task bodies every tool runs, and the marks they leave behind.

Every tool's tasks call one of three plain functions here, so all tools do exactly the same work:

* ``noop()``: records when it started (drain throughput).
* ``stamp(t0)``: records when it started and ``t0``, the moment just before the enqueue call
  (pickup latency = start - t0).
* ``burn(n)``: about 20 ms of pure Python, then records its start and end (CPU-bound throughput).

A mark is one 16-byte record (two float64: ``time.monotonic()`` values, which Linux keeps
system-wide, so they compare across processes) appended with one ``os.write`` to the file named by
the ``BENCH_MARKS`` environment variable. ``O_APPEND`` writes that small are atomic, so worker
threads and processes need no lock, and a mark costs a few microseconds: no broker or database
round trip is added to the task being measured. This module refuses to know about any tool.
"""

from __future__ import annotations

import os
import struct
import time

MARKS_ENV = "BENCH_MARKS"
RECORD = struct.Struct("<dd")

_fd: dict[int, int] = {}  # pid -> file descriptor: a forked child opens its own


def _write(a: float, b: float) -> None:
    pid = os.getpid()
    fd = _fd.get(pid)
    if fd is None:
        fd = os.open(os.environ[MARKS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fd[pid] = fd
    os.write(fd, RECORD.pack(a, b))


def noop() -> None:
    _write(time.monotonic(), 0.0)


def stamp(t0: float) -> None:
    _write(time.monotonic(), t0)


def spin(n: int) -> int:
    """The CPU work itself: pure Python, no I/O, no allocation worth mentioning."""
    x = 0
    for i in range(n):
        x = (x + i * i) % 1_000_003
    return x


def burn(n: int) -> None:
    start = time.monotonic()
    spin(n)
    _write(start, time.monotonic())


def calibrate(target: float = 0.020, rounds: int = 7) -> int:
    """The ``n`` for which ``spin(n)`` takes about ``target`` seconds on this machine."""
    n = 20_000
    spin(n)
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        spin(n)
        samples.append(time.perf_counter() - t)
    # The fastest round: other processes on a small machine only ever make a round slower.
    per_item = min(samples) / n
    return max(1, int(target / per_item))


class Marks:
    """Reads the marks file a driver's workers write to."""

    def __init__(self, path: str) -> None:
        self.path = path

    def count(self) -> int:
        try:
            return os.stat(self.path).st_size // RECORD.size
        except FileNotFoundError:
            return 0

    def read(self, start: int = 0, stop: int | None = None) -> list[tuple[float, float]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(start * RECORD.size)
                data = f.read() if stop is None else f.read((stop - start) * RECORD.size)
        except FileNotFoundError:
            return []
        usable = len(data) - len(data) % RECORD.size
        return [RECORD.unpack_from(data, i) for i in range(0, usable, RECORD.size)]
