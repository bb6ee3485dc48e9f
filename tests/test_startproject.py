"""A user's project exactly as ``django-admin startproject`` writes it, with loom added.

SQLite with no OPTIONS (DEFERRED transactions, Django's 5 s busy timeout), Django's default
logging, the worker's defaults (one child per core, 8 threads each). Tasks read and then write
inside ``transaction.atomic()``, the pattern that fails with "database is locked" when two
connections do it at once on such settings. 500 of them run with 0 failures, three runs in a
row, while another process of the project keeps writing to the same database.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import DB
from tests.plain_project import TASK_APPS, TASK_IMPORT

pytestmark = pytest.mark.skipif(DB != "sqlite", reason="the startproject default database is SQLite "
                                                       "(runs in the LOOM_TEST_DB=sqlite run)")

TASKS = 500

MODELS = """
from django.db import models


class Counter(models.Model):
    name = models.CharField(max_length=50, unique=True)
    value = models.IntegerField(default=0)


class Visit(models.Model):
    at = models.DateTimeField(auto_now_add=True)
"""

TASKS_PY = """
from django.db import transaction
{TASK_IMPORT}

from shop.models import Counter


@task
def bump(name: str) -> int:
    with transaction.atomic():
        counter, _ = Counter.objects.get_or_create(name=name)
        counter.value += 1
        counter.save()
    return counter.value
"""

ENQUEUE = """
import django, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()
from shop.tasks import bump
for i in range(int(sys.argv[1])):
    bump.enqueue(f"k{i % 20}")
"""

# Another process of the site writing all the time (as a web process would), with the same settings.
WRITER = """
import django, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()
from shop.models import Visit
errors = 0
while not os.path.exists(sys.argv[1]):
    try:
        Visit.objects.create()
    except Exception as exc:
        errors += 1
        print("writer error:", exc, flush=True)
print("writer errors:", errors, flush=True)
"""


def user_env() -> dict[str, str]:
    """The environment of a user's shell: none of the suite's settings."""
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE" and not k.startswith("LOOM_")
            and k != "PYTHONPATH"}


def run(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=project, capture_output=True, text=True, timeout=timeout,
                          env=user_env())


def manage(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run(project, "manage.py", *args, timeout=timeout)


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(root)], check=True, env=user_env())
    assert "OPTIONS" not in (root / "mysite" / "settings.py").read_text().split("DATABASES")[1].split("}\n}")[0]
    assert manage(root, "startapp", "shop").returncode == 0
    (root / "shop" / "models.py").write_text(MODELS)
    (root / "shop" / "tasks.py").write_text(TASKS_PY.replace("{TASK_IMPORT}", TASK_IMPORT))
    with open(root / "mysite" / "settings.py", "a") as settings:
        settings.write(textwrap.dedent(f"""
            INSTALLED_APPS += {TASK_APPS + ["shop"]!r}
            TASKS = {{"default": {{"BACKEND": "loom.backends.DatabaseBackend"}}}}
        """))
    (root / "enqueue.py").write_text(ENQUEUE)
    (root / "writer.py").write_text(WRITER)
    for command in (["makemigrations", "shop"], ["migrate"]):
        done = manage(root, *command)
        assert done.returncode == 0, done.stderr
    return root


def counts(project: Path) -> tuple[dict[str, int], int]:
    with sqlite3.connect(project / "db.sqlite3") as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM loom_task GROUP BY status").fetchall())
        total = db.execute("SELECT coalesce(sum(value), 0) FROM shop_counter").fetchone()[0]
    return statuses, total


def test_500_read_then_write_tasks_three_runs_in_a_row_no_failures(project, tmp_path):
    stop = tmp_path / "stop-writer"
    writer = subprocess.Popen([sys.executable, "writer.py", str(stop)], cwd=project, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=user_env())
    try:
        for round_ in range(1, 4):
            enqueued = run(project, "enqueue.py", str(TASKS), timeout=120)
            assert enqueued.returncode == 0, enqueued.stderr
            worker = manage(project, "loom", "worker", "--burst")
            assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
            statuses, total = counts(project)
            assert statuses == {"SUCCESSFUL": TASKS * round_}, (round_, statuses, worker.stderr[-3000:])
            assert total == TASKS * round_  # every read-then-write landed exactly once
            output = worker.stdout + worker.stderr
            assert "database is locked" not in output, [line for line in output.splitlines() if "locked" in line][:20]
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    assert "writer errors: 0" in out, out
    with sqlite3.connect(project / "db.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM shop_visit").fetchone()[0] > 0
