"""Driver: measures one tool, inside that tool's own virtualenv, and prints one JSON line.

A tool's module (``drivers/<tool>.py``) subclasses ``Driver`` and fills in the hooks: how to empty
its queue, how to enqueue one task, many at once (only where the tool has a bulk call), and which
worker command lines to start. ``Driver.run()`` owns the sequence, identical for every tool:

1. enqueue N no-op tasks one call at a time, no worker running      -> enqueue rate
2. start the worker, wait for all N to run                           -> drain throughput
3. same idle worker: enqueue one ``stamp`` at a time, with gaps     -> pickup latency
4. stop the worker, empty the queue, enqueue N in bulk calls         -> bulk enqueue rate
5. empty the queue, enqueue M ``burn`` tasks, start the CPU worker   -> CPU-bound throughput

Throughputs are taken from the marks the tasks leave (see ``workload``): first start to last
start for no-ops, first start to last end for ``burn``, so worker boot time is not counted.
Every phase is bounded in time; a phase that hits its bound reports what it measured and says so
in ``notes``. Workers are process groups of their own, stopped with SIGTERM then SIGKILL, and
listed in ``.work/pids/`` so the orchestrator can stop them if this driver itself dies.
Progress goes to stderr as ``@@ {json}`` lines; the result is the last line on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
WORK = BENCH / ".work"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from workload import MARKS_ENV, Marks  # noqa: E402

PG_DSN = "host=127.0.0.1 port=5432 user=postgres"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
BULK_CHUNK = 1000  # tasks per bulk call
LOADS = (20, 100, 400, 1000)  # offered tasks per second (bench/drivers/base.py measure_loads)


def progress(**fields) -> None:
    print("@@ " + json.dumps(fields), file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def versions(packages: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    return found


def recreate_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis(db: int) -> None:
    import redis

    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()


class WorkerGroup:
    """The worker processes of one tool, each in a process group of its own."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], log: Path) -> None:
        self.commands = commands
        self.env = env
        self.log = log
        self.procs: list[subprocess.Popen] = []
        self.pidfile = WORK / "pids" / f"{os.getpid()}.txt"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        for cmd in self.commands:
            self.procs.append(subprocess.Popen(
                cmd, cwd=BENCH, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True))
        out.close()
        self.pidfile.write_text("".join(f"{p.pid}\n" for p in self.procs))

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def stop(self, grace: float = 15.0) -> None:
        for p in self.procs:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            # Children of a stopped leader (pool processes) go with the whole group.
            _signal_group(p.pid, signal.SIGKILL)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        self.pidfile.unlink(missing_ok=True)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Driver:
    name = "?"
    # Whether the tool has a call that enqueues many tasks at once.
    supports_bulk = False
    # Distributions whose versions go into the result.
    packages: tuple[str, ...] = ()

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.variant = args.variant
        self.quick = args.quick
        self.notes: list[str] = []
        self.work = WORK / f"{self.name}-{self.variant}" if self.variant else WORK / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.worker: WorkerGroup | None = None
        # Seconds each phase may take; a slow tool's rate is steady well before these.
        self.limits = {"enqueue": 10 if self.quick else 15, "drain": 15 if self.quick else 20,
                       "latency": 6 if self.quick else 10, "cpu": 20 if self.quick else 40}

    # -- hooks --------------------------------------------------------------------------------
    def setup(self) -> None:
        """Create this run's database or empty its broker; called once, before anything else."""

    def clear(self) -> None:
        """Remove every task from the queue (no worker is running)."""
        raise NotImplementedError

    def enqueue_noop(self) -> None:
        raise NotImplementedError

    def enqueue_noop_bulk(self, count: int) -> None:
        raise NotImplementedError

    def enqueue_stamp(self, t0: float) -> None:
        raise NotImplementedError

    def enqueue_burn(self, count: int, n: int) -> None:
        raise NotImplementedError

    def worker_commands(self, purpose: str) -> list[list[str]]:
        """Command lines for ``purpose`` "general" (drain, latency) or "cpu"."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(BENCH)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def describe(self) -> dict:
        """Setup text, CPU setup text and versions, for the README and the JSON."""
        return {}

    def teardown(self) -> None:
        pass

    # -- the sequence -------------------------------------------------------------------------
    def start_worker(self, purpose: str, marks: Path) -> Marks:
        marks.unlink(missing_ok=True)
        env = self.worker_env()
        env[MARKS_ENV] = str(marks)
        self.worker = WorkerGroup(self.worker_commands(purpose), env,
                                  self.work / f"worker-{purpose}.log")
        self.launched = time.monotonic()  # marks use the same system-wide clock
        self.worker.start()
        return Marks(str(marks))

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def wait_marks(self, marks: Marks, expected: int, limit: float, phase: str) -> int:
        deadline = time.monotonic() + limit
        last = 0.0
        while True:
            count = marks.count()
            now = time.monotonic()
            if count >= expected:
                return count
            if now > deadline:
                self.notes.append(f"{phase}: stopped at the {limit:.0f} s bound after "
                                  f"{count}/{expected} tasks")
                return count
            if self.worker is not None and not self.worker.alive():
                self.notes.append(f"{phase}: worker exited after {count}/{expected} tasks "
                                  f"(see {self.worker.log})")
                return count
            if now - last > 0.25:
                progress(phase=phase, done=count, total=expected)
                last = now
            time.sleep(0.02)

    def timed_enqueue(self, phase: str, total: int, step: int, call) -> tuple[int, float | None]:
        done = 0
        start = time.perf_counter()
        deadline = start + self.limits["enqueue"]
        last = start
        while done < total:
            size = min(step, total - done)
            call(size)
            done += size
            now = time.perf_counter()
            if now > deadline:
                self.notes.append(f"{phase}: stopped at the {self.limits['enqueue']} s bound "
                                  f"after {done}/{total}")
                break
            if now - last > 0.25:
                progress(phase=phase, done=done, total=total)
                last = now
        elapsed = time.perf_counter() - start
        return done, (done / elapsed if elapsed > 0 else None)

    def run(self) -> dict:
        a = self.args
        result: dict = {"tool": self.name, "variant": self.variant, **self.describe(),
                        "versions": versions(self.packages), "python": sys.version.split()[0]}
        progress(phase="setup")
        self.setup()
        self.clear()

        # 1. single enqueue
        enqueued, result["enqueue"] = self.timed_enqueue(
            "enqueue", a.n, 1, lambda size: self.enqueue_noop())

        # 2. drain
        marks = self.start_worker("general", self.work / "marks-general.bin")
        done = self.wait_marks(marks, enqueued, self.limits["drain"], "drain")
        records = marks.read(0, done)
        starts = sorted(r[0] for r in records)
        result["drain"] = ((len(starts) - 1) / (starts[-1] - starts[0])
                           if len(starts) > 1 and starts[-1] > starts[0] else None)
        result["drained"] = len(starts)
        # Start-up: the worker launched on a full queue, to its first task's start.
        result["startup_s"] = starts[0] - self.launched if starts else None

        # 3. pickup latency, idle worker
        if done < enqueued:
            # Leftover no-ops would mix with the samples: start again from an empty queue.
            self.stop_worker()
            self.clear()
            marks = self.start_worker("general", self.work / "marks-latency.bin")
        result["latency_ms"] = self.measure_latency(marks)
        result["loads"] = self.measure_loads(marks)
        self.stop_worker()

        # 4. bulk enqueue
        result["enqueue_bulk"] = None
        if self.supports_bulk:
            self.clear()
            _, result["enqueue_bulk"] = self.timed_enqueue(
                "bulk enqueue", a.n, BULK_CHUNK, self.enqueue_noop_bulk)

        # 5. CPU-bound
        self.clear()
        progress(phase="cpu enqueue")
        self.enqueue_burn(a.cpu_n, a.burn_n)
        marks = self.start_worker("cpu", self.work / "marks-cpu.bin")
        done = self.wait_marks(marks, a.cpu_n, self.limits["cpu"], "cpu")
        records = marks.read(0, done)
        span = (max(r[1] for r in records) - min(r[0] for r in records)) if records else 0
        result["cpu"] = len(records) / span if span > 0 else None
        result["cpu_tasks"] = len(records)
        self.stop_worker()
        self.clear()
        result["notes"] = self.notes
        return result

    def measure_latency(self, marks: Marks) -> dict | None:
        # One discarded sample proves the worker is up; then it gets half a second to go idle.
        warm = marks.count()
        self.enqueue_stamp(-1.0)
        if self.wait_marks(marks, warm + 1, 60, "latency warm-up") <= warm:
            return None
        time.sleep(0.5)
        base = marks.count()
        # Open-loop arrivals, exponential gaps averaging 25 ms: at the rates measured here the
        # worker is idle at nearly every arrival, and a polling worker is met at a random phase
        # of its poll (waiting for each pickup before the next enqueue would phase-lock to it).
        deadline = time.monotonic() + self.limits["latency"]
        sent = 0
        next_at = time.monotonic()
        while sent < self.args.samples:
            now = time.monotonic()
            if now > deadline:
                break
            if next_at > now:
                time.sleep(next_at - now)
            t0 = time.monotonic()
            self.enqueue_stamp(t0)
            sent += 1
            next_at = t0 + max(0.005, random.expovariate(1 / 0.025))
            if sent % 20 == 0:
                progress(phase="latency", done=sent, total=self.args.samples)
        self.wait_marks(marks, base + sent, 15, "latency")
        lat = [(start - t0) * 1000 for start, t0 in marks.read(base) if t0 > 0]
        if not lat:
            return None
        return {"p50": percentile(lat, 50), "p95": percentile(lat, 95),
                "p99": percentile(lat, 99), "n": len(lat)}


    def measure_loads(self, marks: Marks) -> dict[str, dict]:
        """Pickup latency under offered load: open-loop single enqueues (exponential gaps) at
        each rate of LOADS for ``load_seconds``, the worker warm; p50/p99 per rate and the rate
        really offered (one process enqueues: a tool whose enqueue is slower offers less)."""
        found: dict[str, dict] = {}
        for rate in LOADS:
            time.sleep(0.5)  # idle again
            base = marks.count()
            sent, began = 0, time.monotonic()
            deadline, next_at = began + self.args.load_seconds, began
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                if next_at > now:
                    time.sleep(next_at - now)
                t0 = time.monotonic()
                self.enqueue_stamp(t0)
                sent += 1
                next_at = t0 + random.expovariate(rate)
            offered = sent / (time.monotonic() - began)
            progress(phase=f"load {rate}/s", done=sent, total=sent)
            self.wait_marks(marks, base + sent, 20, f"load {rate}/s")
            lat = [(start - t0) * 1000 for start, t0 in marks.read(base) if t0 > 0]
            if lat:
                found[str(rate)] = {"offered": offered, "p50": percentile(lat, 50), "p99": percentile(lat, 99),
                                    "n": len(lat)}
        return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m drivers")
    parser.add_argument("tool", help="module under drivers/, e.g. loom or celery")
    parser.add_argument("--variant", default="")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--cpu-n", type=int, default=200)
    parser.add_argument("--burn-n", type=int, required=True)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--load-seconds", type=float, default=3.0)
    args = parser.parse_args()

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    # Imported by name, not run as __main__, so the tasks it defines have importable paths.
    driver = importlib.import_module(f"drivers.{args.tool}").DRIVER(args)
    try:
        result = driver.run()
    finally:
        driver.stop_worker()
        driver.teardown()
    print(json.dumps(result), flush=True)
