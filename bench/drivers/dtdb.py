"""django-tasks-db (``django_tasks_db.DatabaseBackend``) on PostgreSQL or SQLite
(``--variant postgresql|sqlite``), through ``django.tasks``.

General and CPU worker: two ``manage.py db_worker --no-startup-delay`` processes (the worker runs
one task at a time, so one process per core), default ``--interval 1`` (seconds between polls of
an empty queue). ``django.tasks`` has no bulk enqueue call and this backend adds none.
"""

from __future__ import annotations

from drivers.djangobase import DjangoDriver


class DjangoTasksDbDriver(DjangoDriver):
    name = "dtdb"
    tool = "dtdb"
    models = ("django_tasks_database.DBTaskResult",)
    packages = ("django-tasks-db", "Django", "psycopg")

    def worker_commands(self, purpose: str) -> list[list[str]]:
        return [self.manage("db_worker", "--no-startup-delay") for _ in range(2)]

    def describe(self) -> dict:
        return {**super().describe(), "broker": self.vendor,
                "setup": "2 × `db_worker` (one task at a time each; polls every 1 s when idle)",
                "cpu_setup": "same workers"}


DRIVER = DjangoTasksDbDriver
