"""What ``loom.parallel.map`` costs over a bare ``ThreadPoolExecutor.map``, for tiny calls.

Run: ``.venv/bin/python bench/parallel_overhead.py [--calls 1000] [--runs 15] [--workers 16]``

Both sides get the same number of threads and the same trivial function, so the difference is
pure bookkeeping: per-call context copy, request state, connection check, bounded feeding,
ordered results. Each side is timed ``--runs`` times after a warm-up; the medians and their ratio
are printed. The script configures minimal Django settings itself (no database is opened).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402
from django.conf import settings  # noqa: E402


def tiny(x: int) -> int:
    return x + 1


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=16)
    options = parser.parse_args()

    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            USE_TZ=True,
            LOOM_PARALLEL_THREADS=options.workers,
        )
    django.setup()
    from loom import parallel

    items = list(range(options.calls))
    expected = [tiny(x) for x in items]
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        def bare() -> None:
            assert list(pool.map(tiny, items)) == expected

        def loom() -> None:
            assert parallel.map(tiny, items, max_workers=options.workers) == expected

        for run in (bare, loom):  # warm-up: threads started, imports done
            run()
        bare_times, loom_times = [], []
        for _ in range(options.runs):  # interleaved, so machine noise hits both sides alike
            bare_times.append(timed(bare))
            loom_times.append(timed(loom))

    bare_median = statistics.median(bare_times)
    loom_median = statistics.median(loom_times)
    per_call = (loom_median - bare_median) / options.calls * 1e6
    print(f"{options.calls} tiny calls, {options.workers} threads, median of {options.runs} runs")
    print(f"  ThreadPoolExecutor.map  {bare_median * 1e3:8.2f} ms")
    print(f"  loom.parallel.map       {loom_median * 1e3:8.2f} ms")
    print(f"  ratio                   {loom_median / bare_median:8.2f}x  ({per_call:+.1f} us per call)")


if __name__ == "__main__":
    main()
