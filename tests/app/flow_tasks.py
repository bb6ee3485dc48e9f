"""Tasks for the flow-control tests: each records when it ran, as a mark the test reads back.

A mark is one line ``start end label pid`` appended to the file named by LOOM_TEST_MARKS (one
``write(2)`` of a short line is atomic with O_APPEND, across threads and processes), with
``time.monotonic()`` values, which are system-wide on Linux and compare across processes.
"""

import os
import time

from loom.compat import task

MARKS = "LOOM_TEST_MARKS"


def mark(start: float, end: float, label: str) -> None:
    fd = os.open(os.environ[MARKS], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{start:.6f} {end:.6f} {label} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_marks(path) -> list[tuple[float, float, str]]:
    with open(path) as f:
        return [(float(a), float(b), label) for a, b, label, _ in (line.split() for line in f if line.strip())]


@task
def interval(label: str, seconds: float = 0.02) -> str:
    start = time.monotonic()
    time.sleep(seconds)
    mark(start, time.monotonic(), label)
    return label


@task(queue_name="other")
def other_interval(label: str, seconds: float = 0.02) -> str:
    start = time.monotonic()
    time.sleep(seconds)
    mark(start, time.monotonic(), label)
    return label


def max_overlap(marks: list[tuple[float, float, str]]) -> int:
    """The most intervals that ran at the same moment."""
    events = sorted([(s, 1) for s, _, _ in marks] + [(e, -1) for _, e, _ in marks], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak
