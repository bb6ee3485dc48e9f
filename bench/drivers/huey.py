"""Huey on Redis (``RedisHuey``, Redis database 13; blocking pops, so no polling).

General and CPU worker: ``huey_consumer -k process -w 2`` (one worker process per core; Huey's
help recommends processes for CPU-bound work). Huey has no bulk enqueue call. Huey's own
``django.tasks`` backend is measured separately (``drivers/huey_django.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from huey import RedisHuey

import workload
from drivers.base import REDIS_HOST, REDIS_PORT, Driver, flush_redis

REDIS_DB = 13

huey = RedisHuey("bench", host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)


@huey.task()
def noop() -> None:
    workload.noop()


@huey.task()
def stamp(t0: float) -> None:
    workload.stamp(t0)


@huey.task()
def burn(n: int) -> None:
    workload.burn(n)


class HueyDriver(Driver):
    name = "huey"
    packages = ("huey", "redis")

    def clear(self) -> None:
        flush_redis(REDIS_DB)

    def enqueue_noop(self) -> None:
        noop()

    def enqueue_stamp(self, t0: float) -> None:
        stamp(t0)

    def enqueue_burn(self, count: int, n: int) -> None:
        for _ in range(count):
            burn(n)

    def worker_commands(self, purpose: str) -> list[list[str]]:
        consumer = str(Path(sys.executable).parent / "huey_consumer")
        return [[sys.executable, consumer, "drivers.huey.huey", "-k", "process", "-w", "2",
                 "-q"]]

    def describe(self) -> dict:
        return {"broker": "redis", "setup": "`huey_consumer -k process -w 2`",
                "cpu_setup": "same consumer"}


DRIVER = HueyDriver
