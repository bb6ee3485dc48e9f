"""Tasks for the workflow, atomic-task and durable-step tests.

Each atomic task records its run as a ``Run`` row in its own transaction: a row exists once per
success, however often the body started. ``LOOM_TEST_MARKS`` names a file where durable steps
append one line each time their function really runs.
"""

import os
import signal
import time

from loom.compat import SUPPORTS_TASK_OPTIONS, task
from tests.app.models import Note, Run

MARKS = "LOOM_TEST_MARKS"
# Per-task options need Django 6.1 or 5.2's backport; elsewhere these tasks are plain.
ATOMIC = {"atomic": True} if SUPPORTS_TASK_OPTIONS else {}


@task
def fetch(url):
    return f"<{url}>"


@task
def parse(text):
    return len(text)


@task
def double(n):
    return n * 2


@task
def total(numbers):
    return sum(numbers)


@task
def fail_step(*args):
    raise ValueError("this step fails")


@task(**ATOMIC)
def counted(*args):
    """A workflow step that counts its successes (atomic: the Run row commits with the success).
    Its own key comes last (in a chain, the previous step's value comes first)."""
    key = args[-1]
    Run.objects.create(key=key, worker_pid=os.getpid())
    time.sleep(0.02)
    return key


@task(**ATOMIC)
def collect(results, key):
    Run.objects.create(key=key, worker_pid=os.getpid())
    return results


@task(**ATOMIC)
def write_then_hang(flag_dir):
    """Writes a row, says so, then waits to be killed; on a later run it finishes at once."""
    Note.objects.create(text="partial")
    if not os.path.exists(os.path.join(flag_dir, "killed")):
        open(os.path.join(flag_dir, "written"), "w").close()
        time.sleep(120)
    return "done"


def _mark(line):
    fd = os.open(os.environ[MARKS], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@task
def ten_steps(flag_dir):
    """Ten durable steps; the first run kills its own process right after step 6 is recorded."""
    import loom

    values = []
    for i in range(1, 11):
        values.append(loom.step(f"s{i}", lambda i=i: (_mark(f"s{i}"), i * i)[1]))
        if i == 6 and not os.path.exists(os.path.join(flag_dir, "died")):
            open(os.path.join(flag_dir, "died"), "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return values
