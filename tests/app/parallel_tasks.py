"""Functions and tasks for the loom.parallel and ThreadBackend tests.

Tasks are declared on the suite's default backend, as a user would; tests move them to a
ThreadBackend alias with ``.using(backend=...)``. State shared with the test (the order tasks ran
in, gates they wait on) lives in module globals because ThreadBackend runs in this process.
"""

import threading

from django.db import DEFAULT_DB_ALIAS, connection, connections

from loom.compat import task

# Keys recorded by record_order, in the order the tasks ran.
ORDER: list[str] = []
# Events tasks and calls wait on, by name; tests set them.
GATES: dict[str, threading.Event] = {}
# The database wrapper of each thread that ran use_connection, to check it was closed after.
WRAPPERS: list = []
# Longest a task or call waits for a gate before failing the test instead of hanging it.
GATE_TIMEOUT = 10


def gate(name: str) -> threading.Event:
    return GATES.setdefault(name, threading.Event())


@task
def record_order(key):
    ORDER.append(key)
    return key


@task
def wait_for_gate(name, started=None):
    if started:
        gate(started).set()
    if not gate(name).wait(GATE_TIMEOUT):
        raise TimeoutError(f"gate {name!r} was never opened")
    return name


@task
def use_connection():
    WRAPPERS.append(connections[DEFAULT_DB_ALIAS])  # this thread's wrapper, not the proxy
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


@task
def note_exists(text):
    from tests.app.models import Note

    return Note.objects.filter(text=text).exists()


@task
def interrupt():
    raise KeyboardInterrupt


def count_notes():
    from tests.app.models import Note

    return Note.objects.count()


def add_note(text):
    from tests.app.models import Note

    return Note.objects.create(text=text).pk


def server_connections():
    """Connections to this test database open on the PostgreSQL server right now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]
