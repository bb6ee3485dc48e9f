"""Huey's own ``django.tasks`` backend (``huey.contrib.djhuey.tasks_backend.HueyBackend``) with
Huey's SQL storage (``SqlHuey`` through peewee's psycopg 3 driver) on PostgreSQL, database
``bench_huey``. Tasks are the ``djproj`` ``django.tasks`` functions, enqueued with ``enqueue``.

General and CPU worker: ``manage.py run_huey -k process -w 2``; SQL storage is polled, so the
consumer gets ``--delay 0.1`` (Huey's default first poll gap) and ``--max-delay 1`` (instead of
10 s, the gap an idle consumer backs off to). The backend stores a result record per task in
Huey's key-value table, as it must to serve ``get_result``. No bulk enqueue call.
"""

from __future__ import annotations

from drivers.djangobase import DjangoDriver


class HueyDjangoDriver(DjangoDriver):
    name = "huey_django"
    tool = "huey"
    packages = ("huey", "peewee", "Django", "psycopg")

    def setup(self) -> None:
        super().setup()
        from huey.contrib.djhuey import HUEY

        self.huey = HUEY

    def clear(self) -> None:
        self.huey.flush()

    def worker_commands(self, purpose: str) -> list[list[str]]:
        return [self.manage("run_huey", "-k", "process", "-w", "2", "--delay", "0.1",
                            "--max-delay", "1", "--quiet")]

    def describe(self) -> dict:
        return {**super().describe(), "broker": self.vendor,
                "setup": "`run_huey -k process -w 2 --delay 0.1 --max-delay 1` (SqlHuey, polls)",
                "cpu_setup": "same consumer"}


DRIVER = HueyDjangoDriver
