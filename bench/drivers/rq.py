"""RQ on Redis (Redis database 12).

General and CPU worker: two ``rq worker`` processes (one per core). Variant ``fork`` (default):
RQ's default ``Worker`` class, which forks a work horse per job; variant ``simple``:
``SimpleWorker``, which runs jobs in the worker process. Bulk enqueue: ``Queue.enqueue_many``
(one Redis pipeline per call).
"""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue

import workload
from drivers.base import REDIS_HOST, REDIS_PORT, Driver, flush_redis

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
        worker_class = "rq.worker.SimpleWorker" if self.variant == "simple" else "rq.worker.Worker"
        return [[sys.executable, "-m", "rq.cli", "worker", "--url", URL, "--logging_level",
                 "WARNING", "--worker-class", worker_class, "default"] for _ in range(2)]

    def describe(self) -> dict:
        if self.variant == "simple":
            setup = "2 × `rq worker --worker-class rq.worker.SimpleWorker` (no fork per job)"
        else:
            setup = "2 × `rq worker` (default `Worker`: forks a work horse per job)"
        return {"broker": "redis", "setup": setup, "cpu_setup": "same workers"}


DRIVER = RQDriver
