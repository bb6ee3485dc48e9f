"""Tasks the suite enqueues. Each is a plain @django.tasks.task, as a user would write it."""

import asyncio
import os
import time

from loom.compat import task


@task
def noop():
    return None


@task
def add(a, b):
    return a + b


@task(queue_name="reports", priority=5)
def report(n):
    return {"n": n, "items": list(range(n))}


@task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@task
def fail(message="boom"):
    raise ValueError(message)


@task
def exit_task():
    raise SystemExit(3)


@task
def bad_return():
    return {1, 2, 3}


@task(takes_context=True)
def with_context(context, value):
    return {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "worker_ids": context.task_result.worker_ids,
        "value": value,
    }


@task
def record_run(key):
    from tests.app.models import Run

    Run.objects.create(key=key, worker_pid=os.getpid())
    return key


@task
async def async_add(a, b):
    await asyncio.sleep(0)
    return a + b


@task
async def async_fail():
    await asyncio.sleep(0)
    raise RuntimeError("async boom")


@task
def sleep_then_record(key, seconds):
    from tests.app.models import Run

    time.sleep(seconds)
    Run.objects.create(key=key, worker_pid=os.getpid())
    return key


@task
def pause(seconds):
    """Sleeps, touching nothing: a run that is still going when the test looks."""
    time.sleep(seconds)


def not_a_task():
    return 1


def plain_function(x):
    return x


@task
def sleep_marked(key, seconds):
    """Marks its start (so a test knows it is really running), sleeps, then records its end."""
    from tests.app.models import Run

    Run.objects.create(key=f"start:{key}", worker_pid=os.getpid())
    time.sleep(seconds)
    Run.objects.create(key=key, worker_pid=os.getpid())
    return key


@task
def hard_exit(code=1):
    os._exit(code)


@task
def segfault():
    import ctypes

    ctypes.string_at(0)


@task(takes_context=True)
def cooperative_loop(context, key):
    from tests.app.models import Run

    Run.objects.create(key=f"start:{key}")
    for _ in range(600):
        time.sleep(0.05)
    return "not cancelled"


@task
async def async_wait(key):
    from tests.app.models import Run

    await Run.objects.acreate(key=f"start:{key}")
    await asyncio.sleep(60)
    return "not cancelled"


@task
def stamp():
    """Returns when it started (wall clock), for pickup-latency measurements."""
    return time.time()


@task(queue_name="reports")
def burn(n=200_000):
    """Pure-Python CPU work (about 20-50 ms): for measuring how processes use cores."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


@task
def chaos(key, seconds=0.02):
    """Records each run (a killed worker may have recorded one before it died), then works a bit.
    One attempt, as Django's default: faults of the infrastructure are loom's to absorb."""
    from tests.app.models import Run

    Run.objects.create(key=key, worker_pid=os.getpid())
    time.sleep(seconds)
    return key


@task
def hold_connection(key, seconds=0.2):
    """Uses its database connection before and after a pause, so a fault can hit it mid-body."""
    from tests.app.models import Run

    Run.objects.create(key=key, worker_pid=os.getpid())
    time.sleep(seconds)
    return Run.objects.filter(key=key).count()


@task
def lose_connection_once(key):
    """The first run's own database connection is terminated by the server under it."""
    from django.db import connection

    from tests.app.models import Run

    Run.objects.create(key=key, worker_pid=os.getpid())
    if Run.objects.filter(key=key).count() == 1:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            else:
                cursor.execute("KILL CONNECTION CONNECTION_ID()")
    return "ok"


@task
def backend_pid():
    """The server process behind this task's connection (PostgreSQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@task
def partition_work(key, seconds=0.5):
    """Marks its start with its host's name, works in small steps (a stopped run ends between
    two), and returns the host's name (tests/test_partition.py)."""
    import socket

    from tests.app.models import Run

    Run.objects.create(key=f"{key}@{socket.gethostname()}", worker_pid=os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return socket.gethostname()


@task
def stoppable_work(key, seconds):
    """Works in small steps and records, in its own table, that its run was stopped and with
    what: a test can see it while loom's table is locked (tests/test_lease_loss.py)."""
    from tests.app.models import Run

    Run.objects.create(key=f"{key}@start", worker_pid=os.getpid())
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.02)
    except BaseException as exc:
        Run.objects.create(key=f"{key}@stopped:{type(exc).__name__}", worker_pid=os.getpid())
        raise
