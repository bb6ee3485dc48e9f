"""Per-database test setup: reachability, and helpers to run a real worker subprocess."""

from __future__ import annotations

import os
import socket

import pytest

DB = os.environ.get("LOOM_TEST_DB", "sqlite")
SERVERS = {"postgresql": ("127.0.0.1", 5432), "mysql": ("127.0.0.1", 3306)}
# Fault and load tests: they start private servers, kill processes and measure contention, so
# `make test` runs them alone (not beside another pytest process) and once, on Django 6.1.
HEAVY = {"test_chaos.py", "test_startproject.py", "test_connection_faults.py", "test_partition.py"}


def pytest_configure(config):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    # A suite started in the background by a script (`make test &`, nohup) inherits SIGINT
    # ignored, and so would every server it starts: the tests that press Ctrl-C on a runserver
    # or a worker would then wait forever. Give Ctrl-C back its meaning, as in a terminal.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "contract: Django tasks backend contract (also run on Django 6.0)")
    config.addinivalue_line("markers", "heavy: fault and load tests (tests/conftest.py HEAVY)")
    if DB in SERVERS:
        host, port = SERVERS[DB]
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            reason = f"{DB} at {host}:{port} is unreachable ({exc})"
            if os.environ.get("CI"):
                pytest.exit(f"CI needs {reason}", returncode=1)
            print(f"\nSKIPPING the {DB} run: {reason}. Start the server to run it.")
            pytest.exit(f"skipped: {reason}", returncode=0)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in HEAVY:
            item.add_marker(pytest.mark.heavy)


@pytest.fixture(scope="session", autouse=True)
def _close_asgiref_connections(django_db_setup):
    """aenqueue/aget_result run in asgiref's one sync thread, whose connection would otherwise
    outlive the session and keep PostgreSQL from dropping the test database."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


def pytest_report_header(config):
    import django

    driver = f" ({os.environ.get('LOOM_MYSQL_DRIVER', 'mysqlclient')})" if DB == "mysql" else ""
    return f"loom test database: {DB}{driver}; Django {django.get_version()}"


def _needs_task_options():
    from loom.compat import SUPPORTS_TASK_OPTIONS

    return pytest.mark.skipif(not SUPPORTS_TASK_OPTIONS,
                              reason="Django 6.0's @task takes no per-task options (loom's OPTIONS apply)")


# For tests of per-task options (tests.app.retry_tasks), which Django 6.0 cannot express.
needs_task_options = _needs_task_options()


import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker_env(settings: str = "tests.settings") -> dict[str, str]:
    """Environment for a subprocess that must use this test run's database (``settings`` may
    name a module that imports tests.settings and changes a few; it must be on PYTHONPATH)."""
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        LOOM_TEST_DB=DB,
        LOOM_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


class WorkerProcess:
    """A real `manage.py loom worker` subprocess; stopped by the test that started it.

    ``env`` adds to the test run's environment; ``own_group`` starts it in a process group of
    its own, so a test can signal the whole group as a terminal's Ctrl-C does."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, own_group: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "loom", "worker", *args],
            cwd=ROOT, env={**worker_env(), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=own_group,
        )
        self.output: list[str] = []

    def wait_started(self, timeout: float = 30) -> None:
        """Block until the worker prints its start line (it is claiming from then on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if "loom worker" in line and "queues" in line:
                return
        raise AssertionError("worker did not start:\n" + "".join(self.output))

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        out, _ = self.proc.communicate(timeout=timeout)
        self.output.append(out or "")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in child_pids(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.communicate()

    @property
    def text(self) -> str:
        return "".join(self.output)


@pytest.fixture
def memory_events(settings):
    """In-process events: nothing holds a connection to the test database after a test."""
    from loom import events

    settings.LOOM_EVENTS = {"BACKEND": "memory"}
    yield
    events.reset()


@pytest.fixture
def start_worker():
    started: list[WorkerProcess] = []

    def start(*args: str, **kwargs) -> WorkerProcess:
        worker = WorkerProcess(*args, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def wait_until(predicate, timeout: float = 30, interval: float = 0.02, message: str = "condition"):
    """Poll a condition with a deadline (for state in another process, where no event exists)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


@contextlib.contextmanager
def task_table_locked():
    """Another client holds loom's task table for the block (PostgreSQL ``LOCK TABLE``, MariaDB
    ``LOCK TABLES``), as a migration's ALTER TABLE does: every other query on it waits; on SQLite
    an open write transaction holds the database's write lock (every write waits, reads do not).
    Held from a thread of its own, whose connection can touch nothing else under MariaDB's LOCK
    TABLES."""
    import threading

    from django.db import connection, transaction

    from loom.models import TaskRecord

    table = TaskRecord._meta.db_table
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                if connection.vendor == "sqlite":
                    cursor.execute(f'UPDATE "{table}" SET priority = priority WHERE 0')  # takes the write lock
                elif connection.vendor == "postgresql":
                    cursor.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
                else:
                    cursor.execute(f"LOCK TABLES `{table}` WRITE")
                locked.set()
                release.wait(60)
                if connection.vendor == "mysql":
                    cursor.execute("UNLOCK TABLES")
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30), "could not lock the task table"
        yield
    finally:
        release.set()
        holder.join()


def child_pids(parent: int) -> list[int]:
    """Live child processes of ``parent`` (from /proc; Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry))
    return found


class PrivateDatabase:
    """The suite's schema on a private PostgreSQL server the test may restart, as Django alias
    ``alias`` in this process and as the "default" database of the workers it starts (``env``).
    ``backend`` enqueues onto it under the backend name "default", as a web process would."""

    def __init__(self, server, alias: str = "private") -> None:
        from django.db import connections

        from loom.backends.database import DatabaseBackend

        self.server = server
        self.alias = alias
        self.name = "loom"
        server.psql(f"CREATE DATABASE {self.name}")
        base = dict(connections.settings["default"])
        connections.settings[alias] = {**base, "HOST": server.host, "PORT": str(server.port), "NAME": self.name,
                                       "TEST": {**base.get("TEST", {}), "NAME": self.name}}
        from django.core.management import call_command

        try:
            call_command("migrate", database=alias, verbosity=0)
        except Exception as exc:
            raise RuntimeError(f"migrating the private server failed ({exc}); its log:\n{server.log_tail()}") from exc
        from django.conf import settings

        default = settings.TASKS["default"]
        self.backend = DatabaseBackend("default", {**default, "OPTIONS": {**default.get("OPTIONS", {}),
                                                                          "DATABASE": alias}})
        self.env = {"LOOM_PG_HOST": server.host, "LOOM_PG_PORT": str(server.port), "LOOM_TEST_DB_NAME": self.name}

    def close(self) -> None:
        from django.db import connections

        connections[self.alias].close()
        del connections[self.alias]  # this thread's connection object, which keeps the old port
        del connections.settings[self.alias]


@pytest.fixture
def private_postgres(django_db_blocker):
    """A private PostgreSQL server with the suite's schema (PostgreSQL runs only). Tests using it
    talk to no other database, so they take no ``django_db`` mark: the server is theirs alone."""
    if DB != "postgresql":
        pytest.skip("uses PostgreSQL (the LOOM_TEST_DB=postgresql run)")
    from tests.servers import PrivatePostgres

    server = PrivatePostgres().start()
    database = None
    try:
        django_db_blocker.unblock()
        database = PrivateDatabase(server)
        yield database
    finally:
        if database is not None:
            database.close()
        django_db_blocker.restore()
        server.stop()

