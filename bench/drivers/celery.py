"""Celery with a Redis broker (Redis database 11), no result backend.

General and CPU worker: ``celery worker --pool prefork --concurrency 2`` (one child per core,
Celery's default on 2 cores) with ``--without-gossip --without-mingle --without-heartbeat``, the
flags Celery's docs suggest for a Redis broker when nothing uses those events. Celery has no bulk
enqueue call (``group`` still publishes one message per task), so bulk is not measured.
"""

from __future__ import annotations

import sys

from celery import Celery

import workload
from drivers.base import REDIS_HOST, REDIS_PORT, Driver, flush_redis

REDIS_DB = 11

app = Celery("bench", broker=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}")
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, worker_send_task_events=False)


@app.task(name="noop")
def noop() -> None:
    workload.noop()


@app.task(name="stamp")
def stamp(t0: float) -> None:
    workload.stamp(t0)


@app.task(name="burn")
def burn(n: int) -> None:
    workload.burn(n)


class CeleryDriver(Driver):
    name = "celery"
    packages = ("celery", "kombu", "redis")

    def clear(self) -> None:
        flush_redis(REDIS_DB)

    def enqueue_noop(self) -> None:
        noop.delay()

    def enqueue_stamp(self, t0: float) -> None:
        stamp.delay(t0)

    def enqueue_burn(self, count: int, n: int) -> None:
        for _ in range(count):
            burn.delay(n)

    def worker_commands(self, purpose: str) -> list[list[str]]:
        return [[sys.executable, "-m", "celery", "-A", "drivers.celery", "worker",
                 "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"]]

    def describe(self) -> dict:
        return {"broker": "redis",
                "setup": "prefork pool, `--concurrency 2`, no result backend",
                "cpu_setup": "same worker (2 prefork children)"}


DRIVER = CeleryDriver
