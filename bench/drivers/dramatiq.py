"""Dramatiq on Redis (``RedisBroker``, Redis database 14), no result backend.

General worker: ``dramatiq -p 2 -t 8`` (Dramatiq's defaults on 2 cores: one process per core,
8 threads each). CPU worker: ``-p 2 -t 1`` (one thread per process, so the GIL is not shared).
Dramatiq has no bulk enqueue call (a ``group`` sends one message per task).
"""

from __future__ import annotations

import sys

import dramatiq
from dramatiq.brokers.redis import RedisBroker

import workload
from drivers.base import REDIS_HOST, REDIS_PORT, Driver, flush_redis

REDIS_DB = 14

broker = RedisBroker(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def noop() -> None:
    workload.noop()


@dramatiq.actor(max_retries=0)
def stamp(t0: float) -> None:
    workload.stamp(t0)


@dramatiq.actor(max_retries=0)
def burn(n: int) -> None:
    workload.burn(n)


class DramatiqDriver(Driver):
    name = "dramatiq"
    packages = ("dramatiq", "redis")

    def clear(self) -> None:
        flush_redis(REDIS_DB)

    def enqueue_noop(self) -> None:
        noop.send()

    def enqueue_stamp(self, t0: float) -> None:
        stamp.send(t0)

    def enqueue_burn(self, count: int, n: int) -> None:
        for _ in range(count):
            burn.send(n)

    def worker_commands(self, purpose: str) -> list[list[str]]:
        threads = "1" if purpose == "cpu" else "8"
        return [[sys.executable, "-m", "dramatiq", "drivers.dramatiq", "--processes", "2",
                 "--threads", threads]]

    def describe(self) -> dict:
        return {"broker": "redis", "setup": "`dramatiq -p 2 -t 8` (defaults on 2 cores)",
                "cpu_setup": "`dramatiq -p 2 -t 1`"}


DRIVER = DramatiqDriver
