"""``loom worker``: claim and run tasks until stopped (see loom.worker and loom.worker.supervisor)."""

from __future__ import annotations

import argparse
import os

from django.core.management.base import CommandError

from loom import health
from loom.cli import counted

help = "Claim and run tasks until stopped (SIGTERM/SIGINT: graceful; twice: fast)."


def add_arguments(parser) -> None:
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
    parser.add_argument("--queue", action="append", dest="queues", metavar="NAME[:threads=N|processes=N]",
                        help="Queue to serve, optionally with its own executor; repeat for several "
                             "(default: all of QUEUES).")
    parser.add_argument("--processes", type=int, default=None,
                        help="Child processes for the general queues (default: OPTIONS WORKER "
                             "processes, else one per core; 0 runs in this process, no supervisor).")
    parser.add_argument("--threads", type=int, default=None, help="Sync tasks run at once per child (default 8).")
    parser.add_argument("--async-limit", type=int, default=100,
                        help="async def tasks run at once per child (default 100).")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="Tasks a child holds beyond its busy threads (default: adapts to task "
                             "run time; 0 claims only what it can start at once).")
    parser.add_argument("--burst", action="store_true", help="Run everything due, then exit (tests, cron).")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="Seconds running tasks get to finish after SIGTERM/SIGINT (default 30).")
    parser.add_argument("--max-tasks-per-child", type=int, default=None,
                        help="Replace a child after it ran this many tasks (leak protection).")
    parser.add_argument("--max-memory-per-child", type=float, default=None, metavar="MB",
                        help="Replace a child once its resident memory passes this many MiB.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-gate", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-id", default=None, help=argparse.SUPPRESS)
    health.add_arguments(parser)


def run(command, options) -> None:
    from loom.backends.database import DatabaseBackend
    from loom.compat import task_backends
    from loom.pooler import polling_notice

    from loom.databases import prepare_worker

    backend = task_backends[options["backend"]]
    if not isinstance(backend, DatabaseBackend):
        raise CommandError(f"TASKS[{options['backend']!r}] is not a loom DatabaseBackend.")
    prepare_worker(wal=backend.config.sqlite_wal)
    layout = backend.config.worker
    threads = options["threads"] or layout.get("threads") or 8
    processes = options["processes"]
    if processes is None:
        processes = layout.get("processes") or os.cpu_count() or 1
    for name in ("max_tasks_per_child", "max_memory_per_child"):
        if options[name] is not None and options[name] <= 0:
            raise CommandError(f"--{name.replace('_', '-')} must be positive.")
    if threads < 1 or processes < 0:
        raise CommandError("--threads must be >= 1 and --processes >= 0.")
    if not options["child"] and (notice := polling_notice(options["backend"], backend.config)):
        command.stderr.write(notice)  # once, from the process the user started
    if processes == 0 or options["child"]:
        _run_in_process(command, options, threads)
    else:
        _supervise(command, options, backend, processes, threads)


def _run_in_process(command, options, threads: int) -> None:
    from loom.worker import Worker, WorkerFailed
    from loom.worker.supervisor import parse_queue

    try:
        queues = [parse_queue(q)[0] for q in options["queues"] or []] or None
        worker = Worker(
            backend=options["backend"], queues=queues, threads=threads, async_limit=options["async_limit"],
            burst=options["burst"], grace=options["grace"], worker_id=options["worker_id"],
            max_tasks=options["max_tasks_per_child"], max_memory_mb=options["max_memory_per_child"],
            prefetch=options["prefetch"], start_gate=_gate(options["start_gate"]),
        )
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    worker.install_signal_handlers(child=options["child"])
    health.serve_worker(command, options, worker)
    if options["verbosity"] >= 1:
        command.stdout.write(f"loom worker {worker.id} (pid {os.getpid()}): queues "
                             f"{', '.join(worker.queues or ['*'])}; {counted(worker.threads, 'thread')}")
        command.stdout.flush()
    try:
        worker.run()
    except WorkerFailed as exc:
        raise CommandError(str(exc)) from None
    if options["verbosity"] >= 1:
        command.stdout.write(f"loom worker {worker.id}: stopped after {counted(worker.finished, 'task')}"
                             + (" (recycled)" if worker.recycled else ""))
        command.stdout.flush()
    if worker.recycled and options["child"]:
        from loom.worker.supervisor import RECYCLE_EXIT

        raise SystemExit(RECYCLE_EXIT)


def _gate(value: str | tuple[int, int] | None):
    """The supervisor's start gate: say "ready" on one pipe, then wait for end of file on the other."""
    if not value:
        return None
    go_fd, ready_fd = value if isinstance(value, tuple) else (int(part) for part in value.split(","))

    def wait() -> None:
        os.write(ready_fd, b".")
        os.close(ready_fd)
        while os.read(go_fd, 64):
            pass
        os.close(go_fd)

    return wait


def _supervise(command, options, backend, processes: int, threads: int) -> None:
    from loom.worker.supervisor import ChildSpec, Supervisor, plan

    try:
        specs = plan(backend, options["queues"], processes, threads)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    probes = health.serve_supervisor(command, options, backend)

    def run_child(spec: ChildSpec, worker_id: str, gate: tuple[int, int] | None) -> int:
        """In a forked child: the same worker as ``--processes 0``, with this child's share."""
        child = {**options, "child": True, "worker_id": worker_id, "queues": spec.queues, "processes": 0,
                 "start_gate": gate, "health_port": None,
                 "health_dir": probes.folder if probes is not None else None}
        try:
            _run_in_process(command, child, spec.threads)
        except CommandError as exc:
            command.stderr.write(f"loom worker {worker_id}: {exc}")
            return exc.returncode or 1
        return 0

    supervisor = Supervisor(specs, store=backend.store, run_child=run_child, burst=options["burst"],
                            grace=options["grace"], lost_retries=backend.config.lost_retries,
                            probes=probes)
    supervisor.install_signal_handlers()
    if options["verbosity"] >= 1:
        command.stdout.write(f"loom worker supervisor (pid {os.getpid()}): {describe(specs)}")
        command.stdout.flush()
    code = supervisor.run()
    if options["verbosity"] >= 1:
        restarts = "no restarts" if not supervisor.restarts else counted(supervisor.restarts, "restart")
        command.stdout.write(f"loom worker supervisor: stopped ({restarts})")
    if code:
        raise CommandError("a worker child kept failing; see the errors above", returncode=code)


def describe(specs) -> str:
    """One line for the children: "2 processes x 8 threads, queues default, reports"."""
    groups: dict[tuple[str, int], int] = {}
    for spec in specs:
        key = (", ".join(spec.queues) if spec.queues else "all queues", spec.threads)
        groups[key] = groups.get(key, 0) + 1
    return "; ".join(f"{counted(count, 'process', 'processes')} x {counted(threads, 'thread')}, queues {queues}"
                     for (queues, threads), count in groups.items())
