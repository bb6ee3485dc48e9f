"""Tasks that report progress, for the progress, events, SSE and dashboard tests."""

import asyncio
import threading

from loom import events, progress  # noqa: F401  (connects their signal receivers in workers)
from loom.compat import task

# Set by a test to let ``wait_then_count`` go on; lets a test act while a task is RUNNING.
gates: dict[str, threading.Event] = {}


@task(takes_context=True)
def count(context, n, label="step"):
    reporter = progress.for_context(context)
    for i in range(1, n + 1):
        reporter.update(i, n, f"{label} {i}")
    return n


@task
def count_module_level(n):
    stored = [progress(i, n, f"item {i}") for i in range(1, n + 1)]
    return sum(stored)


@task
async def async_count(n):
    for i in range(1, n + 1):
        await progress.areport(i, n, f"async {i}")
        await asyncio.sleep(0)
    return n


@task
def unknown_total(n):
    for i in range(1, n + 1):
        progress(i, message="working")
    return n


@task(takes_context=True)
def wait_then_count(context, gate, n):
    """Report 1 of n, wait (bounded) for the test to open ``gate``, then report the rest."""
    reporter = progress.for_context(context)
    reporter.update(1, n, "waiting")
    gates.setdefault(gate, threading.Event()).wait(30)
    for i in range(2, n + 1):
        reporter.update(i, n, f"step {i}")
    return n


@task
def broken(message="expected failure"):
    raise RuntimeError(message)
