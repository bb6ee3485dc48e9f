"""Supervisor: runs a worker as N child processes and keeps them alive.

``loom worker`` starts one child per core by default (``--processes``), plus children for
per-queue executors (``--queue reports:processes=2`` runs two single-thread children for
"reports", the CPU-bound shape: one task per process, so tasks use separate cores and a hard
time limit can kill exactly one task; ``--queue io:threads=16`` runs one child with 16
threads). Children are forked from the supervisor, where Django is already set up, so a child
starts in milliseconds; the supervisor runs no thread and closes its database connections
before each fork, so no child inherits a connection, a lock or a thread.

The supervisor restarts a child that dies, at once rescuing the tasks it held (``WorkerLost``,
retried while attempts remain) instead of waiting for their leases to expire; it kills a child
whose task passed its hard time limit (``TimeLimitExceeded``); it restarts children that
recycled themselves (``--max-tasks-per-child``, ``--max-memory-per-child``). The first SIGTERM or
SIGINT is passed on as SIGTERM (graceful: running tasks finish within ``--grace``); a second one
as SIGUSR1 (the children stop fast); the supervisor itself exits when every child has. Children
ignore SIGINT and treat any number of SIGTERMs as one graceful stop, so a stop that reaches every
process (Ctrl-C in a terminal, systemd's default KillMode) means the same as one that reaches
the supervisor only (docker, Kubernetes). Children die with the supervisor (Linux
``PR_SET_PDEATHSIG``), so a SIGKILL of the whole worker leaves no orphan running tasks.
Signal handlers only set flags; ``run_once()`` does the work.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from loom.databases import close_broken, label_thread, unlabel_thread
from loom.exceptions import TimeLimitExceeded, WorkerLost
from loom.service import Outage
from loom.store import Store

logger = logging.getLogger("loom.worker")

# Seconds between two checks of the children.
CHECK_INTERVAL = 0.2
# A child that dies sooner than this after its start counts as crash-looping.
MIN_UPTIME = 5.0
# Seconds between two looks for tasks past their hard time limit (one query each).
HARD_LIMIT_INTERVAL = 1.0
# Seconds the first children wait for each other before they start claiming anyway.
START_GATE_TIMEOUT = 60.0
# Exit code of a child that recycled itself (max tasks / memory): restart it, not a failure.
RECYCLE_EXIT = 75
# Seconds a supervisor's statement may wait for another client's lock before it gives up (and
# tries again a second later): its loop forwards signals, restarts children and answers /livez.
LOCK_WAIT = 1.0
# Crashes in a row at start-up after which a --burst run gives up (an ordinary run tries 4x longer).
MAX_CRASHES = 5
# Longest pause before restarting a crash-looping child.
MAX_RESTART_DELAY = 30.0


@dataclass
class ChildSpec:
    """What one child runs: its queues and its threads."""

    queues: list[str] | None
    threads: int
    label: str


class ForkedProcess:
    """A forked child, with the part of ``subprocess.Popen``'s interface the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL  # reaped elsewhere: gone all the same
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.005)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class Child:
    spec: ChildSpec
    worker_id: str
    proc: ForkedProcess
    started: float = field(default_factory=time.monotonic)
    failures: int = 0
    restart_at: float | None = None


def _prepare_child(parent: int) -> None:
    """In a child just forked: its own signals, and death with the supervisor."""
    # A terminal's Ctrl-C reaches the whole process group; the supervisor hears it and forwards a
    # graceful stop, so the child ignores SIGINT. Until the worker installs its own handlers, a
    # SIGTERM ends a child that holds no task yet.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: children notice the parent is gone by their own heartbeat instead
    if os.getppid() != parent:
        os._exit(1)  # the supervisor died between the fork and the prctl
    random.seed()  # siblings must not share retry jitter


ChildMain = Callable[[ChildSpec, str, "tuple[int, int] | None"], int]


def _exit_child(code: int) -> None:
    """End a forked child as an interpreter ends, but without returning into the supervisor's
    stack: exit handlers (an OpenTelemetry or Sentry flush, logging) run, streams are flushed,
    then the process ends."""
    import atexit

    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


class Supervisor:
    """``run_child(spec, worker_id, gate)`` is what a child runs, in the forked process, and
    returns its exit code."""

    def __init__(self, specs: list[ChildSpec], *, store: Store, run_child: ChildMain,
                 lost_retries: int = 0, burst: bool = False, grace: float = 30.0, probes: Any = None) -> None:
        self.lost_retries = lost_retries
        self.exit_code = 0
        self.specs = specs
        self.store = store
        self.run_child = run_child
        self.probes = probes  # the health endpoint (loom.health.SupervisorProbes), answered in run()
        self.burst = burst
        self.grace = grace
        self.children: list[Child] = []
        self.restarts = 0
        self._next_limit_check = 0.0
        self._signals = 0
        self._forwarded = 0
        self.outage = Outage("supervisor")

    # -- children ------------------------------------------------------------------------------

    def _spawn(self, spec: ChildSpec, failures: int = 0, gate: tuple[int, int] | None = None,
               close: tuple[int, ...] = ()) -> Child:
        """Fork a child from this process, where Django is set up already: it starts in
        milliseconds, where a fresh interpreter takes most of a second. Nothing that cannot cross
        a fork is open here: the supervisor runs no threads and closes its connections first."""
        from django.db import connections

        from loom.worker import make_worker_id

        worker_id = make_worker_id()
        connections.close_all()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                _prepare_child(parent)
                unlabel_thread()  # the worker's own connections, not the supervisor's
                for fd in close:
                    os.close(fd)
                if self.probes is not None:
                    self.probes.server.socket.close()  # the supervisor's endpoint, not the child's
                code = self.run_child(spec, worker_id, gate)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                _exit_child(code)
        logger.info("loom supervisor started child %s (pid %d, %s)", worker_id, pid, spec.label)
        return Child(spec=spec, worker_id=worker_id, proc=ForkedProcess(pid), failures=failures)

    def start(self) -> None:
        """Start the children together: each sets up its worker, says it is ready, and waits;
        when all are ready (or after START_GATE_TIMEOUT) they start claiming at once, so the first
        child up does not take the whole queue's head while the others start."""
        go_read, go_write = os.pipe()
        ready_read, ready_write = os.pipe()
        try:
            self.children = [self._spawn(spec, gate=(go_read, ready_write), close=(go_write, ready_read))
                             for spec in self.specs]
        finally:
            os.close(go_read)
            os.close(ready_write)
        deadline = time.monotonic() + START_GATE_TIMEOUT
        ready = 0
        with os.fdopen(ready_read, "rb", buffering=0) as ready_pipe:
            while ready < len(self.children) and time.monotonic() < deadline and not self.stopping:
                readable, _, _ = select.select([ready_pipe], [], [], 0.1)
                if readable:
                    got = ready_pipe.read(64)
                    if not got:
                        break  # every child has exited or closed its end
                    ready += len(got)
                if any(c.proc.poll() is not None for c in self.children):
                    break  # one died while booting: let the others go; run_once() handles it
        os.close(go_write)  # end of file on every child's gate: go

    # -- signals (flags only) ------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        # Only count (no Event.set(): it could deadlock against the wait() it interrupts); the
        # loop looks every CHECK_INTERVAL.
        self._signals += 1

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def stop(self) -> None:
        self._on_signal(signal.SIGTERM, None)

    @property
    def stopping(self) -> bool:
        return self._signals > 0

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        # The loop's reads and rescues must not wait behind a lock on the task table (a migration
        # can hold one for minutes): they fail after LOCK_WAIT and are tried again.
        from django.db import connections

        connections.close_all()
        label_thread("supervisor", lock_wait=LOCK_WAIT)
        self.start()
        try:
            while self.run_once():
                self._pause(CHECK_INTERVAL)
        finally:
            for child in self.children:
                if child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait()
            if self.probes is not None:
                self.probes.close()
        return self.exit_code

    def _pause(self, seconds: float) -> None:
        """Wait between two checks, answering health probes meanwhile."""
        if self.probes is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                readable, _, _ = select.select([self.probes.fileno()], [], [], remaining)
            except InterruptedError:
                continue
            if readable:
                self.probes.handle_pending()

    def run_once(self) -> bool:
        """Check the children once; False when the supervisor is done."""
        while self._forwarded < self._signals:
            # The first stop signal asks the children to stop gracefully (SIGTERM: running tasks
            # finish within --grace); a later one is a deliberate "stop now" (SIGUSR1).
            sig = signal.SIGTERM if self._forwarded == 0 else signal.SIGUSR1
            self._forwarded += 1
            for child in self.children:
                if child.proc.poll() is None:
                    child.proc.send_signal(sig)
        for child in self.children:
            code = child.proc.poll()
            if code is None:
                continue
            if child.restart_at is None:
                self._after_exit(child, code)
            if not self.stopping and not (self.burst and code == 0) and time.monotonic() >= child.restart_at:
                self._replace(child)
        if time.monotonic() >= self._next_limit_check:
            self._next_limit_check = time.monotonic() + HARD_LIMIT_INTERVAL
            self._enforce_hard_limits()
        alive = [c for c in self.children if c.proc.poll() is None]
        if self.stopping or self.burst:
            return bool(alive) or (self.burst and not self.stopping and self._restarting())
        return True

    def _restarting(self) -> bool:
        return any(c.proc.poll() not in (None, 0) for c in self.children)

    def _after_exit(self, child: Child, code: int) -> None:
        uptime = time.monotonic() - child.started
        if code == RECYCLE_EXIT:
            child.failures = 0  # recycled itself (max tasks / memory): replace it at once
        elif code != 0:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            logger.error("loom child %s (pid %d) died with %s", child.worker_id, child.proc.pid, how)
            rescued = self._rescue(child, f"The worker process running the task died ({how}).")
            # A crash loop is a child that fails by itself at start-up, holding no task (bad
            # settings, an import error). Dying under a task, or being killed from outside
            # (SIGKILL, as the OOM killer or an operator does), is not: restart at once.
            killed = code in (-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT)
            looping = uptime < MIN_UPTIME and not rescued and not killed
            child.failures = child.failures + 1 if looping else 0
            if child.failures >= MAX_CRASHES and (self.burst or uptime < MIN_UPTIME and child.failures >= MAX_CRASHES * 4):
                logger.error("loom child keeps dying at start (%d times): giving up", child.failures)
                self.exit_code = 1
                self.stop()
        else:
            child.failures = 0  # recycled itself, or a burst child that finished
        delay = 0.0 if child.failures == 0 else min(2 ** child.failures * 0.25, MAX_RESTART_DELAY)
        child.restart_at = time.monotonic() + delay

    def _rescue(self, child: Child, why: str) -> int:
        try:
            ids = self.store.rescue(timezone.now(), workers=[child.worker_id],
                                    error_class=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}",
                                    error_text=f"loom.exceptions.WorkerLost: {why}\n",
                                    extra_attempts=self.lost_retries)
        except Exception as exc:
            self.outage.failed(exc)
            logger.warning("loom supervisor could not rescue the tasks of %s now; their leases will expire",
                           child.worker_id)
            return 0
        self.outage.recovered()
        if ids:
            logger.warning("loom supervisor rescued %d tasks of child %s", len(ids), child.worker_id)
        return len(ids)

    def _replace(self, child: Child) -> None:
        index = self.children.index(child)
        self.children[index] = self._spawn(child.spec, failures=child.failures)
        self.restarts += 1

    def _enforce_hard_limits(self) -> None:
        """Kill a child whose task is past its hard limit; that task fails (or retries) as timed out."""
        from loom.models import TaskRecord

        by_worker = {c.worker_id: c for c in self.children if c.proc.poll() is None}
        if not by_worker:
            return
        now = timezone.now()
        try:
            rows = list(TaskRecord.objects.using(self.store.alias).filter(
                status="RUNNING", claimed_by__in=list(by_worker), hard_timeout__isnull=False,
            ).values_list("id", "claimed_by", "last_attempted_at", "hard_timeout"))
        except Exception as exc:
            self.outage.failed(exc)  # logged once per outage; checked again in a second
            close_broken()
            return
        self.outage.recovered()
        for task_id, worker_id, started, hard in rows:
            if started is None or now - started < timedelta(seconds=hard):
                continue
            child = by_worker[worker_id]
            logger.error("loom task %s passed its hard time limit (%gs): killing child %s",
                         task_id, hard, worker_id)
            try:
                self.store.rescue(now, task_ids=[str(task_id)], claimed_by=worker_id,
                                  error_class=f"{TimeLimitExceeded.__module__}.{TimeLimitExceeded.__qualname__}",
                                  error_text=f"loom.exceptions.TimeLimitExceeded: the task ran past its hard "
                                             f"time limit of {hard:g}s; its process was killed.\n")
            except Exception as exc:  # killed all the same; its rescue then records WorkerLost
                self.outage.failed(exc)
            child.proc.kill()


def parse_queue(arg: str) -> tuple[str, dict[str, int] | None]:
    """``NAME`` or ``NAME:threads=N`` or ``NAME:processes=N`` -> (name, executor or None)."""
    name, _, spec = arg.partition(":")
    if not name:
        raise ValueError(f"--queue {arg!r}: the queue name is missing (NAME[:threads=N|processes=N]).")
    if not spec:
        return name, None
    kind, _, number = spec.partition("=")
    if kind not in ("threads", "processes") or not number.isdigit() or int(number) < 1:
        raise ValueError(f"--queue {arg!r}: expected NAME:threads=N or NAME:processes=N with N >= 1.")
    return name, {kind: int(number)}


def plan(backend, queue_args: list[str] | None, processes: int, threads: int) -> list[ChildSpec]:
    """Which children to run: per-queue executors first, then the general children."""
    executors: dict[str, dict[str, int]] = {}
    for name, spec in (backend.config.worker.get("executors") or {}).items():
        executors[name] = parse_queue(f"{name}:{next(iter(spec))}={next(iter(spec.values()))}")[1]
    plain: list[str] = []
    named: list[str] = []
    for arg in queue_args or []:
        name, spec = parse_queue(arg)
        named.append(name)
        if spec is not None:
            executors[name] = spec
    all_queues = named if queue_args else sorted(backend.queues)
    unknown = set(all_queues) - backend.queues if backend.queues else set()
    if unknown:
        raise ValueError(f"Queue(s) {', '.join(sorted(unknown))} not in TASKS[{backend.alias!r}]['QUEUES'] "
                         f"({', '.join(sorted(backend.queues))}).")
    specs: list[ChildSpec] = []
    for name in all_queues:
        spec = executors.get(name)
        if spec is None:
            plain.append(name)
        elif "processes" in spec:
            specs += [ChildSpec([name], 1, f"{name}: process {i + 1}/{spec['processes']}")
                      for i in range(spec["processes"])]
        else:
            specs.append(ChildSpec([name], spec["threads"], f"{name}: {spec['threads']} threads"))
    if plain or not all_queues:
        specs += [ChildSpec(plain or None, threads, f"{','.join(plain) or 'all queues'}: {threads} threads")
                  for _ in range(processes)]
    return specs
