"""Settings of the tiny Django project shared by the Django-based tools (loom, django-tasks-db,
Huey's django.tasks backend). The driver picks the tool and the database with environment
variables, which it also hands to the worker it starts:

* ``BENCH_TASKS``: ``loom`` | ``dtdb`` | ``huey``
* ``BENCH_DB``: ``postgresql`` | ``sqlite``
* ``BENCH_DB_NAME``: the PostgreSQL database name, or the SQLite file path
* ``BENCH_TASK_EVENTS``: ``0`` turns loom's task events off (bench/targets.py measures what
  they cost a drain)

Every tool gets the same SQLite options: IMMEDIATE transactions, WAL, synchronous=NORMAL.
"""

import os

TOOL = os.environ.get("BENCH_TASKS", "loom")
VENDOR = os.environ.get("BENCH_DB", "postgresql")
DB_NAME = os.environ.get("BENCH_DB_NAME", "bench_loom")

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["djproj"]
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"handlers": [], "level": "WARNING"}}

if VENDOR == "sqlite":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DB_NAME,
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DB_NAME, "USER": "postgres", "HOST": "127.0.0.1", "PORT": "5432",
        "CONN_MAX_AGE": None,
    }}

if TOOL == "loom":
    INSTALLED_APPS.append("loom")
    TASKS = {"default": {"BACKEND": "loom.backends.DatabaseBackend", "QUEUES": ["default"]}}
    if os.environ.get("BENCH_TASK_EVENTS") == "0":
        LOOM_EVENTS = {"TASK_EVENTS": False}
elif TOOL == "dtdb":
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
elif TOOL == "huey":
    INSTALLED_APPS.append("huey.contrib.djhuey")
    TASKS = {"default": {"BACKEND": "huey.contrib.djhuey.tasks_backend.HueyBackend"}}
    HUEY = {
        "huey_class": "huey.contrib.sql_huey.SqlHuey",
        "name": "bench",
        "database": f"psycopg3://postgres@127.0.0.1:5432/{DB_NAME}",
        "immediate": False,
        "results": True,
        "consumer": {"workers": 2, "worker_type": "process"},
    }
else:
    raise RuntimeError(f"BENCH_TASKS={TOOL!r}: expected loom, dtdb or huey")
