"""The demo's tasks: plain ``@django.tasks.task`` functions, as any project writes them.

- ``generate_report``: CPU-bound work in chunks, reporting progress after each chunk.
- ``fetch_prices``: an ``async def`` task that waits on (simulated) I/O and reports progress.
- ``always_fails``: raises, to show a failed task with its error, its traceback and a retry.
- ``flaky``: fails its first two attempts and succeeds on the third; loom retries it with
  back-off (``@task(max_attempts=3, retry_backoff=...)``, Django 6.1's per-task options), so the
  waits between attempts show on the demo page and the dashboard.
- ``tick``: the periodic task of ``OPTIONS["PERIODIC"]`` (settings.py), every 10 seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from django.tasks import task
from django.utils import timezone

from loom import progress

# Chunks of work in a report; each is a fraction of a second of hashing.
REPORT_CHUNKS = 20
# Hash rounds per chunk.
ROUNDS_PER_CHUNK = 500_000
# The attempt on which the flaky task succeeds (it fails the ones before).
FLAKY_SUCCEEDS_ON = 3
# Seconds before the flaky task's first retry; loom doubles it for the next (with jitter).
FLAKY_BACKOFF = 1.5


@task(takes_context=True, queue_name="reports", priority=5)
def generate_report(context, title: str = "Quarterly report") -> dict:
    reporter = progress.for_context(context)
    digest = b"loom"
    for chunk in range(1, REPORT_CHUNKS + 1):
        for _ in range(ROUNDS_PER_CHUNK):
            digest = hashlib.sha256(digest).digest()
        reporter.update(chunk, REPORT_CHUNKS, f"chunk {chunk} of {REPORT_CHUNKS}")
    return {"title": title, "checksum": digest.hex()[:16], "chunks": REPORT_CHUNKS}


@task
async def fetch_prices(symbols: list[str]) -> dict:
    prices = {}
    for i, symbol in enumerate(symbols, 1):
        await asyncio.sleep(0.25)  # stands in for an HTTP request
        prices[symbol] = round(random.uniform(10, 500), 2)
        await progress.areport(i, len(symbols), f"fetched {symbol}")
    return prices


@task
def always_fails(reason: str = "the demo asked for a failure") -> None:
    progress(1, 2, "about to fail")
    raise RuntimeError(reason)


@task(takes_context=True, max_attempts=FLAKY_SUCCEEDS_ON, retry_backoff=FLAKY_BACKOFF)
def flaky(context, succeed_on: int = FLAKY_SUCCEEDS_ON) -> dict:
    attempt = context.attempt
    progress(attempt, succeed_on, f"attempt {attempt} of {succeed_on}")
    if attempt < succeed_on:
        raise ConnectionError(f"the flaky service timed out on attempt {attempt}")
    return {"succeeded_on_attempt": attempt}


@task
def tick() -> str:
    return f"tick at {timezone.now():%H:%M:%S}"
