"""RQ on Redis (Redis database 12).

General and CPU worker: ``rq worker-pool --num-workers 2`` (one worker per core) with RQ's default
``Worker`` class, which forks a work horse per job. Bulk enqueue: ``Queue.enqueue_many`` (one
Redis pipeline per call).
"""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue

import workload
from drivers.base import REDIS_HOST, REDIS_PORT, Driver, flush_redis, main

REDIS_DB = 12
URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def noop() -> None:
    workload.noop()


def stamp(t0: float) -> None:
    workload.stamp(t0)


def burn(n: int) -> None:
    workload.burn(n)


class RQDriver(Driver):
    name = "rq"
    supports_bulk = True
    packages = ("rq", "redis")

    def setup(self) -> None:
        self.queue = Queue("default", connection=Redis(host=REDIS_HOST, port=REDIS_PORT,
                                                       db=REDIS_DB))

    def clear(self) -> None:
        flush_redis(REDIS_DB)

    def enqueue_noop(self) -> None:
        self.queue.enqueue(noop)

    def enqueue_noop_bulk(self, count: int) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop) for _ in range(count)])

    def enqueue_stamp(self, t0: float) -> None:
        self.queue.enqueue(stamp, t0)

    def enqueue_burn(self, count: int, n: int) -> None:
        self.queue.enqueue_many([Queue.prepare_data(burn, (n,)) for _ in range(count)])

    def worker_commands(self, purpose: str) -> list[list[str]]:
        return [[sys.executable, "-m", "rq.cli", "worker-pool", "--num-workers", "2",
                 "--url", URL, "--logging-level", "WARNING", "default"]]

    def describe(self) -> dict:
        return {"broker": "redis", "setup": "`rq worker-pool --num-workers 2` (forks per job)",
                "cpu_setup": "same pool"}


if __name__ == "__main__":
    main(RQDriver)
