"""DjangoDriver: the part shared by the tools that plug into ``django.tasks``.

It points the ``djproj`` project at the tool and the database (environment variables read by
``djproj/settings.py``, inherited by the worker), creates a fresh database per run (PostgreSQL:
``bench_<tool>``, dropped by the orchestrator at the end; SQLite: a file under ``.work/``),
runs ``migrate``, and enqueues through the public ``Task.enqueue``. Subclasses name the tables
to empty and the worker command lines.
"""

from __future__ import annotations

import os
import sys

from drivers.base import Driver, recreate_pg_database


class DjangoDriver(Driver):
    tool = "?"  # BENCH_TASKS value
    models: tuple[str, ...] = ()  # "app_label.Model" whose tables clear() empties

    def __init__(self, args) -> None:
        super().__init__(args)
        self.vendor = self.variant or "postgresql"
        if self.vendor == "sqlite":
            self.db_name = str(self.work / "db.sqlite3")
        else:
            self.db_name = f"bench_{self.tool}"
        os.environ.update({"BENCH_TASKS": self.tool, "BENCH_DB": self.vendor,
                           "BENCH_DB_NAME": self.db_name,
                           "DJANGO_SETTINGS_MODULE": "djproj.settings"})

    def setup(self) -> None:
        if self.vendor == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(self.db_name + suffix)
                except FileNotFoundError:
                    pass
        else:
            recreate_pg_database(self.db_name)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from djproj import tasks

        self.tasks = tasks

    def clear(self) -> None:
        from django.apps import apps
        from django.db import connection

        with connection.cursor() as cursor:
            for label in self.models:
                table = apps.get_model(label)._meta.db_table
                if self.vendor == "sqlite":
                    cursor.execute(f'DELETE FROM "{table}"')
                else:
                    cursor.execute(f'TRUNCATE "{table}" CASCADE')

    def enqueue_noop(self) -> None:
        self.tasks.noop.enqueue()

    def enqueue_stamp(self, t0: float) -> None:
        self.tasks.stamp.enqueue(t0)

    def enqueue_burn(self, count: int, n: int) -> None:
        for _ in range(count):
            self.tasks.burn.enqueue(n)

    def manage(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "django", *argv]

    def teardown(self) -> None:
        from django.db import connections

        connections.close_all()

    def describe(self) -> dict:
        return {"database": self.vendor}
