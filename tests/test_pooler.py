"""loom.pooler: a real PgBouncer in transaction mode between loom and PostgreSQL.

Each test module run starts Debian's ``pgbouncer`` on a free loopback port with its own ini file
in a temporary folder (pool_mode = transaction, two server connections for many clients), in
front of the machine's PostgreSQL, and stops it at the end. Enqueue (one by one, in a rolled-back
transaction, and COPY for a batch), claim, complete and the tasks' own queries all go through it;
the worker LISTENs on a direct alias, or polls and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from loom.conf import Options
from loom.pooler import check, listen_alias
from tests.conftest import DB, ROOT, wait_until, worker_env
from tests.plain_project import PlainProject

PG_HOST = os.environ.get("LOOM_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("LOOM_PG_PORT", "5432")
# Longest PgBouncer gets to say it is up, in seconds.
STARTUP_DEADLINE = 20.0
# An idle worker with a notifier looks at the table this rarely: finishing much sooner than this
# proves that NOTIFY woke it.
SLOW_POLL = 60

needs_postgresql = pytest.mark.skipif(DB != "postgresql", reason="PgBouncer fronts PostgreSQL: the postgresql run")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgBouncer:
    """A private pgbouncer process; ``stop()`` ends it (SIGTERM) and removes its folder."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="loom-pgbouncer-"))
        self.dir.chmod(0o755)  # pgbouncer refuses root: it runs as postgres and reads its files
        self.port = free_port()
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(textwrap.dedent(f"""
            [databases]
            * = host={PG_HOST} port={PG_PORT}
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {self.port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {self.dir}/users.txt
            admin_users = postgres
            pool_mode = transaction
            default_pool_size = 2
            max_client_conn = 200
            ignore_startup_parameters = extra_float_digits
        """))
        for path in self.dir.iterdir():
            path.chmod(0o644)
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen([shutil.which("pgbouncer"), *user, str(self.dir / "pgbouncer.ini")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log: list[str] = []
        self._up = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._up.wait(STARTUP_DEADLINE):
            self.stop()
            raise AssertionError("pgbouncer did not start:\n" + "".join(self.log))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)
            if "process up" in line:
                self._up.set()

    def admin(self, command: str) -> list[dict]:
        """Rows of a console command (SHOW POOLS, SHOW STATS) from pgbouncer's admin database."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, dbname="pgbouncer", user="postgres",
                             autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.execute(command)
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pgbouncer():
    if DB != "postgresql":
        pytest.skip("PgBouncer fronts PostgreSQL: the postgresql run")
    if not shutil.which("pgbouncer"):
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's pgbouncer (.ci/run installs it)")
        print("\nSKIPPING the PgBouncer tests: pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    bouncer = PgBouncer()
    yield bouncer
    bouncer.stop()


def settings_module(folder: Path, port: int, options: dict) -> str:
    """A settings module: the suite's, with DATABASES['default'] through PgBouncer (marked as
    pooled the way Django asks) and a direct alias, and the given task OPTIONS."""
    name = f"pooled_settings_{os.getpid()}_{len(list(folder.glob('pooled_settings_*')))}"
    (folder / f"{name}.py").write_text(textwrap.dedent(f"""
        from tests.settings import *  # noqa: F403

        _direct = dict(DATABASES["default"])
        DATABASES = {{
            "default": {{**_direct, "PORT": "{port}", "DISABLE_SERVER_SIDE_CURSORS": True}},
            "direct": {{**_direct, "OPTIONS": {{"application_name": "loom-direct-{os.getpid()}"}}}},
        }}
        TASKS = {{"default": {{**TASKS["default"], "OPTIONS": {{**TASKS["default"]["OPTIONS"], **{options!r}}}}}}}
    """))
    return name


def env_for(folder: Path, settings: str) -> dict[str, str]:
    env = worker_env(settings)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(ROOT)])
    return env


def django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


ENQUEUE = """
import json
from django.db import transaction
from loom.compat import task_backends
from tests.app import tasks

ids = [tasks.record_run.enqueue(f"one-{i}").id for i in range(20)]
with transaction.atomic():
    ids.append(tasks.add.enqueue(2, 3).id)
try:
    with transaction.atomic():
        tasks.record_run.enqueue("rolled-back")
        raise RuntimeError
except RuntimeError:
    pass
batch = task_backends["default"].enqueue_many(tasks.record_run, [((f"copy-{i}",), {}) for i in range(100)])
print(json.dumps(ids + [r.id for r in batch]))
"""


def enqueue_through(env: dict[str, str]) -> list[str]:
    return json.loads(django(env, "shell", "-c", ENQUEUE).stdout.strip().splitlines()[-1])


def statuses(ids: list[str]) -> dict[str, int]:
    from loom.models import TaskRecord

    counts: dict[str, int] = {}
    for status in TaskRecord.objects.filter(pk__in=ids).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def listeners() -> list[tuple[str, str]]:
    """(application_name, query) of the sessions LISTENing on this test database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name, query FROM pg_stat_activity WHERE datname = current_database() "
                       "AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()")
        return cursor.fetchall()


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_worker_through_pgbouncer_listens_on_the_direct_alias(pgbouncer, start_worker, tmp_path):
    settings = settings_module(tmp_path, pgbouncer.port, {"LISTEN_DATABASE": "direct", "POLL_INTERVAL": SLOW_POLL})
    env = env_for(tmp_path, settings)
    worker = start_worker("--processes", "1", "--threads", "4", env=env)
    worker.wait_started()
    wait_until(lambda: any(name.startswith("loom-direct") for name, _ in listeners()), message="LISTEN on direct")

    started = time.monotonic()
    ids = enqueue_through(env)
    assert len(ids) == 121
    done = wait_until(lambda: statuses(ids) == {"SUCCESSFUL": 121} and statuses(ids), timeout=SLOW_POLL / 2,
                      message="every task SUCCESSFUL")
    assert done == {"SUCCESSFUL": 121}
    assert time.monotonic() - started < SLOW_POLL / 2  # woken by NOTIFY, not by a poll

    from tests.app.models import Run

    assert not Run.objects.filter(key="rolled-back").exists()
    assert Run.objects.filter(key__startswith="copy-").count() == 100  # the tasks' own queries too
    pools = [p for p in pgbouncer.admin("SHOW POOLS") if p["database"] == connection.settings_dict["NAME"]]
    assert pools and pools[0]["pool_mode"] == "transaction"
    [stats] = [s for s in pgbouncer.admin("SHOW STATS") if s["database"] == connection.settings_dict["NAME"]]
    assert stats["total_xact_count"] > 100  # enqueue, claims, completions: through the pooler
    worker.signal()
    assert worker.wait() == 0, "".join(worker.output)
    assert "polling" not in "".join(worker.output)


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_plain_project_behind_pgbouncer_polls_and_says_so(pgbouncer, tmp_path):
    """startproject's settings with DATABASES through PgBouncer as Django documents it (no
    LISTEN_DATABASE), the worker with its defaults and Django's default logging."""
    project = PlainProject(tmp_path)
    project.append_settings(f"""
        DATABASES = {{"default": {{
            "ENGINE": "django.db.backends.postgresql", "NAME": {connection.settings_dict["NAME"]!r},
            "USER": "postgres", "HOST": "127.0.0.1", "PORT": {pgbouncer.port},
            "DISABLE_SERVER_SIDE_CURSORS": True,
        }}}}
    """)
    project.write("shop/tasks.py", """
        {TASK_IMPORT}

        @task
        def count_users(n):
            from django.contrib.auth.models import User
            return [n, User.objects.count()]
    """)
    project.manage("migrate", "-v", "0")
    warning = project.manage("check", "--database", "default").stderr
    assert "loom.W133" in warning and "LISTEN_DATABASE" in warning
    with project.running("loom", "worker") as (worker, output):
        said = "".join(output)
        assert "polling for new tasks" in said and "LISTEN_DATABASE" in said, said
        ids = json.loads(project.shell("""
            import json
            from shop.tasks import count_users
            print(json.dumps([count_users.enqueue(i).id for i in range(30)]))
        """).strip().splitlines()[-1])
        wait_until(lambda: statuses(ids) == {"SUCCESSFUL": 30}, timeout=60, message="every task SUCCESSFUL by polling")
        assert listeners() == []  # nobody LISTENs through the pooler
    assert "".join(output).count("polling for new tasks") == 1  # said once, not once per child


def test_listen_alias_follows_the_options():
    assert listen_alias(Options(database="default")) == "default"  # not pooled: LISTEN on it
    assert listen_alias(Options(database="default", listen_database="other")) == "other"


def test_a_listen_database_that_is_not_in_databases_is_an_error():
    [error] = check("default", Options(listen_database="nope"))
    assert error.id == "loom.E131" and "'nope'" in error.msg and "DATABASES" in error.msg


@pytest.mark.skipif(DB == "postgresql", reason="on PostgreSQL the same alias is a valid LISTEN_DATABASE")
def test_a_listen_database_off_postgresql_is_an_error():
    [error] = check("default", Options(listen_database="default"))
    assert error.id == "loom.E132" and "PostgreSQL" in error.msg


def test_bad_listen_database_value_names_the_option():
    with pytest.raises(ValueError, match="LISTEN_DATABASE"):
        Options.from_settings({"LISTEN_DATABASE": 5})


def test_event_subscribers_listen_on_the_listen_database_too(settings):
    from loom.events import Config, _database_alias

    settings.TASKS = {"default": {**settings.TASKS["default"], "OPTIONS": {"LISTEN_DATABASE": "direct"}}}
    assert _database_alias(Config()) == "direct"
    assert _database_alias(Config(database="mine")) == "mine"  # LOOM_EVENTS["DATABASE"] still wins
