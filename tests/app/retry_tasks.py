"""Tasks with loom's per-task options (Django 6.1: extra @task keyword arguments).

Kept apart from tasks.py so the contract tests also import on Django 6.0, whose @task takes no extras.
"""

import os
import time

from django.tasks import task

from tests.app.models import Run


@task(max_attempts=3, retry_backoff=0)
def flaky(key, failures):
    """Fails the first `failures` runs, then succeeds."""
    Run.objects.create(key=key)
    if Run.objects.filter(key=key).count() <= failures:
        raise ValueError(f"run {Run.objects.filter(key=key).count()} fails")
    return "ok"


@task(timeout=0.3, hard_timeout=1.5)
def busy_forever():
    """Pure Python: the soft limit interrupts it."""
    while True:
        sum(range(1000))


@task(timeout=0.3, hard_timeout=1.0)
def blocked_in_c(seconds=60):
    """Blocked in C (sleep): only the hard limit (killing the process) stops it."""
    time.sleep(seconds)
