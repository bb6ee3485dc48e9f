"""The three benchmark tasks as plain ``django.tasks`` tasks; the bodies live in ``workload``."""

from django.tasks import task

import workload


@task
def noop() -> None:
    workload.noop()


@task
def stamp(t0: float) -> None:
    workload.stamp(t0)


@task
def burn(n: int) -> None:
    workload.burn(n)


@task
def hop(*previous) -> int:
    """A workflow step that does nothing but pass a number on (bench/workflow.py)."""
    return 1
