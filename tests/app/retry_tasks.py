"""Tasks with loom's per-task options (Django 6.1: extra @task keyword arguments)."""

from django.tasks import task

from tests.app.models import Run


@task(max_attempts=3, retry_backoff=0)
def flaky(key, failures):
    """Fails the first `failures` runs, then succeeds."""
    Run.objects.create(key=key)
    if Run.objects.filter(key=key).count() <= failures:
        raise ValueError(f"run {Run.objects.filter(key=key).count()} fails")
    return "ok"
