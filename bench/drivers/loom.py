"""loom on PostgreSQL or SQLite (``--variant postgresql|sqlite``), through ``django.tasks``.

General worker: ``loom worker --threads 2`` (with loom's default process count: one child per
core where the worker supervises children). CPU worker: ``--queue default:processes=2`` when the installed
worker offers it (``loom worker --help`` is read), else the same threaded worker, said in notes.
Bulk enqueue: ``DatabaseBackend.enqueue_many`` (one INSERT per call).
"""

from __future__ import annotations

import os
import shlex
import subprocess

from drivers.base import BULK_CHUNK
from drivers.djangobase import DjangoDriver

# For loom's developers: environment variables that replace the worker options, e.g.
# BENCH_LOOM_ARGS="--processes 1 --threads 8"; the result's notes say so.
OVERRIDE = {"general": "BENCH_LOOM_ARGS", "cpu": "BENCH_LOOM_CPU_ARGS"}


class LoomDriver(DjangoDriver):
    name = "loom"
    tool = "loom"
    models = ("loom.TaskRecord",)
    supports_bulk = True
    packages = ("django-loom", "Django", "psycopg")

    def setup(self) -> None:
        super().setup()
        from django.tasks import task_backends

        self.backend = task_backends["default"]
        help_text = subprocess.run(self.manage("loom", "worker", "--help"), capture_output=True,
                                   text=True, env=self.worker_env(), timeout=60).stdout
        self.has_processes = "--processes" in help_text
        if not self.has_processes:
            self.notes.append("cpu: this loom worker has no --processes option; "
                              "ran the threaded worker (--threads 2, one process)")

    def enqueue_noop_bulk(self, count: int) -> None:
        self.backend.enqueue_many(self.tasks.noop, [((), {})] * count)

    def enqueue_burn(self, count: int, n: int) -> None:
        for start in range(0, count, BULK_CHUNK):
            size = min(BULK_CHUNK, count - start)
            self.backend.enqueue_many(self.tasks.burn, [((n,), {})] * size)

    def worker_commands(self, purpose: str) -> list[list[str]]:
        override = os.environ.get(OVERRIDE[purpose])
        if override:
            self.notes.append(f"{purpose}: worker options overridden: {override}")
            return [self.manage("loom", "worker", *shlex.split(override))]
        if purpose == "cpu" and self.has_processes:
            # loom's documented shape for CPU-bound work: one task at a time per process.
            return [self.manage("loom", "worker", "--queue", "default:processes=2")]
        return [self.manage("loom", "worker", "--threads", "2")]

    def describe(self) -> dict:
        return {**super().describe(), "broker": self.vendor,
                "setup": "`loom worker --threads 2` (process count: loom's default)",
                "cpu_setup": "`loom worker --queue default:processes=2` (one task per process) where offered, else `--threads 2`"}


DRIVER = LoomDriver
