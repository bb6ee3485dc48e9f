"""loom.compat: one import of Django's Tasks API, on Django 6.x and on 5.2 with the backport.

The whole suite runs on each Django of the matrix (``make test``); these tests pin what differs:
where the API comes from, the backport's app check, pickling, and a user's own project end to
end with the import a user of this Django writes.
"""

from __future__ import annotations

import json
import pickle
import textwrap

import django
import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from loom import compat
from loom.compat import BACKPORT, InvalidTask, InvalidTaskBackend, Task, task_backends
from tests.app import tasks
from tests.conftest import DB
from tests.plain_project import FLAKY_TASK, PlainProject


def test_the_api_comes_from_the_package_this_django_has():
    expected = "django_tasks" if django.VERSION < (6, 0) else "django.tasks"
    assert compat.BACKPORT is (django.VERSION < (6, 0))
    assert Task.__module__.startswith(expected)
    assert type(task_backends).__module__ == expected
    assert InvalidTask.__module__ == f"{expected}.exceptions"
    assert issubclass(InvalidTaskBackend, ImproperlyConfigured)
    # Tasks defined with Django's decorator get loom's task class (and its options, where the
    # decorator passes them on).
    assert type(tasks.add).__module__ == "loom.task"


def test_per_task_options_reach_the_task_class_where_django_passes_them():
    from tests.app import retry_tasks

    assert retry_tasks.flaky.max_attempts == (3 if compat.SUPPORTS_TASK_OPTIONS else None)
    assert compat.SUPPORTS_TASK_OPTIONS is (django.VERSION < (6, 0) or django.VERSION >= (6, 1))


def test_a_loom_task_pickles_by_module_path_on_every_django():
    moved = tasks.add.using(priority=7, queue_name="reports")
    copy = pickle.loads(pickle.dumps(moved))
    assert copy == moved and copy.func is tasks.add.func and copy.priority == 7


def test_backport_app_missing_from_installed_apps_is_a_clear_error():
    from django.conf import settings

    from loom.checks import check_tasks_app

    assert check_tasks_app() == []
    without = [app for app in settings.INSTALLED_APPS if app != compat.BACKPORT_APP]
    with override_settings(INSTALLED_APPS=without):
        errors = check_tasks_app()
    if BACKPORT:
        [error] = errors
        assert error.id == "loom.E130" and error.level == checks.ERROR
        assert "'django_tasks'" in error.msg and "INSTALLED_APPS" in error.hint
    else:
        assert errors == []  # Django 6 has the API built in; there is no app to add


@pytest.mark.skipif(DB != "sqlite", reason="the plain project is startproject's SQLite; run in the sqlite run")
def test_a_users_project_runs_tasks_end_to_end(tmp_path):
    """startproject's settings, the README's lines, tasks written with this Django's own import."""
    project = PlainProject(tmp_path)
    project.write("shop/tasks.py", textwrap.dedent("""
        {TASK_IMPORT}

        @task
        def add(a, b):
            return a + b

        @task
        async def shout(word):
            return word.upper()
    """) + FLAKY_TASK)
    project.manage("migrate", "-v", "0")
    checked = project.manage("check")  # exits 0: warnings only (loom.W003 for startproject's SQLite)
    assert "ERRORS" not in checked.stderr and "loom.E" not in checked.stderr, checked.stderr
    marker = tmp_path / "flaky-ran"
    ids = json.loads(project.shell(f"""
        import json
        from shop.tasks import add, flaky, shout
        print(json.dumps([add.enqueue(2, 3).id, flaky.enqueue({str(marker)!r}).id, shout.enqueue("hi").id]))
    """).strip().splitlines()[-1])
    project.manage("loom", "worker", "--burst", timeout=120)
    results = json.loads(project.shell(f"""
        import json
        from shop.tasks import add, flaky, shout
        ids = {ids!r}
        out = []
        for task, id in zip([add, flaky, shout], ids):
            r = task.get_result(id)
            out.append([r.status, r.return_value if r.status == "SUCCESSFUL" else None, r.attempts])
        print(json.dumps(out))
    """).strip().splitlines()[-1])
    add_result, flaky_result, shout_result = results
    assert add_result == ["SUCCESSFUL", 5, 1]
    assert shout_result == ["SUCCESSFUL", "HI", 1]
    if compat.SUPPORTS_TASK_OPTIONS:
        assert flaky_result == ["SUCCESSFUL", "second run", 2]
    else:
        assert flaky_result[0] == "FAILED" and flaky_result[2] == 1  # Django 6.0: one attempt
