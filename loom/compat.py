"""Django's Tasks API, from wherever this Django keeps it: the only module that imports it.

Django 6.0 and later ship the API as ``django.tasks``. Django 5.2 LTS gets it from the
``django-tasks`` backport (``pip install django-tasks``, import name ``django_tasks``, and
``"django_tasks"`` in ``INSTALLED_APPS`` so that its signals and checks are wired). Every other
module of loom, and loom's tests, import the API from here, so a difference between the two lives
in this file and nowhere else:

- the backport names two exceptions ``InvalidTaskError``/``InvalidTaskBackendError``; Django 6
  says ``InvalidTask``/``InvalidTaskBackend``. Both are exported under Django 6's names.
- ``normalize_json`` is ``django.utils.json.normalize_json`` on 6.x and
  ``django_tasks.utils.normalize_json`` in the backport (the same function).
- Django 6.0's ``@task`` takes no extra keyword arguments; 6.1 and the backport (>= 0.12) pass
  them to the backend's ``task_class`` (``SUPPORTS_TASK_OPTIONS``).
- Django 6.1's ``Task`` pickles by module path; the older ones do not (``loom.task.Task`` adds it).

It refuses to guess: with neither package importable it raises ``ImportError`` naming what to
install. There is nothing to configure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import django

# True on Django 5.2, where the API comes from the django-tasks backport.
BACKPORT = django.VERSION < (6, 0)
# The app label users add to INSTALLED_APPS on 5.2 (Django 6 needs none).
BACKPORT_APP = "django_tasks"

if BACKPORT:  # pragma: no cover - each branch runs in its own venv of the test matrix
    try:
        import django_tasks as _api  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"loom needs Django's Tasks API. Django {django.get_version()} has none built in: "
            "install the backport with `pip install django-tasks` (or `pip install "
            "django-loom[backport]`) and add 'django_tasks' to INSTALLED_APPS, or upgrade to "
            "Django 6."
        ) from exc
    from django_tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        default_task_backend,
        task,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json
else:
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        default_task_backend,
        task,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import (
        InvalidTask,
        InvalidTaskBackend,
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

# Annotations for "any Task" and "any TaskResult": generic in django-stubs, plain classes at run time.
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    AnyTask: TypeAlias = Task[..., Any]
    AnyTaskResult: TypeAlias = TaskResult[..., Any]
else:
    AnyTask = Task
    AnyTaskResult = TaskResult

# The logger Django's own task signal receivers write to.
LOGGER = "django_tasks" if BACKPORT else "django.tasks"
# Whether @task(...) passes extra keyword arguments (max_attempts=..., timeout=...) to the
# backend's task_class: Django 6.1 and the backport do, Django 6.0 does not.
SUPPORTS_TASK_OPTIONS = BACKPORT or django.VERSION >= (6, 1)

__all__ = [
    "AnyTask", "AnyTaskResult",
    "BACKPORT", "BACKPORT_APP", "BaseTaskBackend", "DEFAULT_TASK_BACKEND_ALIAS",
    "DEFAULT_TASK_QUEUE_NAME", "InvalidTask", "InvalidTaskBackend", "LOGGER", "SUPPORTS_TASK_OPTIONS", "Task",
    "TaskContext", "TaskError", "TaskResult", "TaskResultDoesNotExist", "TaskResultMismatch",
    "TaskResultStatus", "default_task_backend", "normalize_json", "task", "task_backends",
    "task_enqueued", "task_finished", "task_started",
]
