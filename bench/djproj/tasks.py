"""The benchmark tasks as plain ``django.tasks`` tasks; the bodies live in ``workload``."""

import os
import time

from django.tasks import task
from django.tasks.signals import task_started

import workload

# Wall-clock time each ``chain`` task's task_started signal reached this receiver (by task id).
_started: dict[str, float] = {}


def _on_started(sender, task_result, **kwargs) -> None:
    if task_result.task.name == "chain":
        _started[str(task_result.id)] = time.time()


# Connected when the worker first imports this module (it resolves the task before it sends
# task_started), after the tool's own receivers.
task_started.connect(_on_started, dispatch_uid="bench.chain")


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


@task(takes_context=True)
def chain(context) -> None:
    """Where a pickup's time goes (bench/targets.py): the claim's clock (the row's
    ``last_attempted_at``, read by the worker just before its claim statement), when
    task_started reached the receiver above, and when this body began, as one line of wall-clock
    times appended to the file named by ``BENCH_CHAIN``."""
    body = time.time()
    result = context.task_result
    claimed = result.last_attempted_at.timestamp() if result.last_attempted_at else 0.0
    line = f"{result.id} {claimed:.6f} {_started.pop(str(result.id), 0.0):.6f} {body:.6f}\n"
    fd = os.open(os.environ["BENCH_CHAIN"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
