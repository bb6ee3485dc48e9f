"""Tasks with loom's per-task options (extra @task keyword arguments: Django 6.1, and 5.2 with
the backport).

Django 6.0's @task takes no extras: there these tasks are built without their options (so the
module still imports) and the tests that need them skip, saying why (``needs_task_options``).
"""

import time

from loom.compat import SUPPORTS_TASK_OPTIONS, task
from tests.app.models import Run


def options(**values):
    return values if SUPPORTS_TASK_OPTIONS else {}


@task(**options(max_attempts=3, retry_backoff=0))
def flaky(key, failures):
    """Fails the first `failures` runs, then succeeds."""
    Run.objects.create(key=key)
    if Run.objects.filter(key=key).count() <= failures:
        raise ValueError(f"run {Run.objects.filter(key=key).count()} fails")
    return "ok"


@task(**options(timeout=0.3, hard_timeout=1.5))
def busy_forever():
    """Pure Python: the soft limit interrupts it."""
    while True:
        sum(range(1000))


@task(**options(timeout=0.3, hard_timeout=1.0))
def blocked_in_c(seconds=60):
    """Blocked in C (sleep): only the hard limit (killing the process) stops it."""
    time.sleep(seconds)
