"""Demo page ``/parallel/``: one view fetches several slow sources side by side with loom.parallel.

The sources are simulated (``time.sleep`` stands for a network round trip, so the demo runs
offline), except one that really queries the database from a pool thread, whose connection loom
closes when the call ends. One source fails and one is slower than the page's time budget: the
page still renders, showing what ``return_exceptions=True`` and ``ParallelTimeout.results`` give
you. The page reports the wall time against the sum of the sources' times.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from loom import parallel

# Seconds the page waits for all sources together before it renders what it has.
TIME_BUDGET = 1.5


@dataclass(frozen=True)
class Source:
    name: str
    seconds: float
    answer: str = ""
    fails: bool = False


SOURCES = [
    Source("Weather service", 0.6, "18 °C, light rain"),
    Source("Exchange rates", 0.8, "1 EUR = 1.08 USD"),
    Source("News headlines", 0.5, "12 new headlines"),
    Source("Stock quotes", 0.7, "ACME 142.10 (+1.2%)"),
    Source("Task table (real database query)", 0.3),
    Source("Recommendations (fails)", 0.4, fails=True),
    Source("Archive search (too slow)", 3.0, "4 documents"),
]


def fetch(source: Source) -> dict[str, Any]:
    started = time.monotonic()
    time.sleep(source.seconds)
    if source.fails:
        raise ConnectionError("upstream answered 503 Service Unavailable")
    if source.answer:
        value = source.answer
    else:
        from loom.models import TaskRecord

        value = f"{TaskRecord.objects.count()} task records"
    return {"value": value, "thread": threading.current_thread().name,
            "seconds": time.monotonic() - started}


def parallel_page(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    try:
        outcomes = parallel.map(fetch, SOURCES, timeout=TIME_BUDGET, return_exceptions=True)
        timed_out: set[int] = set()
    except parallel.ParallelTimeout as exc:
        outcomes = [exc.results.get(i) for i in range(len(SOURCES))]
        timed_out = set(exc.pending)
    elapsed = time.monotonic() - started

    rows = []
    for position, (source, outcome) in enumerate(zip(SOURCES, outcomes)):
        if position in timed_out:
            rows.append({"source": source, "state": "timeout",
                         "detail": f"not back within the {TIME_BUDGET:g} s budget"})
        elif isinstance(outcome, BaseException):
            rows.append({"source": source, "state": "error",
                         "detail": f"{type(outcome).__name__}: {outcome}"})
        else:
            rows.append({"source": source, "state": "ok", "detail": outcome["value"],
                         "thread": outcome["thread"], "seconds": outcome["seconds"]})
    return render(request, "demo/parallel.html", {
        "rows": rows,
        "elapsed": elapsed,
        "sequential": sum(source.seconds for source in SOURCES),
        "budget": TIME_BUDGET,
    })
