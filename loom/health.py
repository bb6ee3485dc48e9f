"""Health probes of a worker: live = the process answers, ready = its claim loops tick and the
database answers.

``manage.py loom worker --health-port 8001`` serves, on ``--health-host`` (default 0.0.0.0):

- ``GET /livez``: 200 while the process can answer at all;
- ``GET /readyz``: 200 when every claim loop of the worker ticked within ``--health-stale``
  seconds (default: 30, or three ``POLL_INTERVAL``s if longer) and a ``SELECT 1`` on the task
  database succeeds; 503 otherwise. Both answer JSON saying why.

A claim loop ticks at least once per ``POLL_INTERVAL`` even when idle, so a worker that silently
stops consuming (a hung fetch loop, a deadlock, a child stuck in a C call with the loop's thread)
turns unready within the stale window, instead of looking healthy while tasks pile up. With child
processes (the default), the supervisor serves the endpoint: each child touches a file named
after its pid in a private folder when its loop has ticked (at most once a second), and the
supervisor reads their ages; a dead child's file is ignored and removed.

It refuses to restart anything: the orchestrator decides what an unready worker means.
``manage.py loom health`` (``loom.cli.health``) asks the same questions from a shell.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Seconds without a claim-loop tick after which a worker is not ready (at least 3 poll intervals).
DEFAULT_STALE = 30.0
# Address the endpoint listens on: all interfaces, so a kubelet can reach the pod's IP.
DEFAULT_HOST = "0.0.0.0"
# Seconds between two touches of a child's tick file.
TOUCH_EVERY = 1.0


def database_problem(alias: str) -> str | None:
    """None when ``SELECT 1`` succeeds on a fresh connection of this thread, else the error."""
    from django.db import connections

    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return None
    except Exception as exc:  # any failure is the answer, not a crash of the probe
        return f"database {alias!r} does not answer: {type(exc).__name__}: {exc}".strip()
    finally:
        connection.close()


class Readiness:
    """The answer of both probes, from the ages of the claim loops and the database."""

    def __init__(self, alias: str, stale: float, loop_ages: Callable[[], dict[str, float]]) -> None:
        self.alias = alias
        self.stale = stale
        self.loop_ages = loop_ages

    def live(self) -> tuple[bool, dict[str, Any]]:
        return True, {"live": True, "pid": os.getpid()}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        problems = []
        ages = self.loop_ages()
        if not ages:
            problems.append("no claim loop has started yet")
        for name, age in sorted(ages.items()):
            if age > self.stale:
                problems.append(f"claim loop {name} last ticked {age:.1f}s ago (more than {self.stale:g}s)")
        database = database_problem(self.alias)
        if database:
            problems.append(database)
        report = {"ready": not problems, "problems": problems,
                  "claim_loops": {name: round(age, 3) for name, age in ages.items()}, "stale_after": self.stale}
        return not problems, report


class HealthServer:
    """``/livez`` and ``/readyz`` over HTTP, from a daemon thread."""

    def __init__(self, readiness: Readiness, host: str, port: int) -> None:
        self.readiness = readiness
        handler = type("Handler", (_Handler,), {"readiness": readiness})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.host, self.port = host, self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="loom-health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    readiness: Readiness

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        probes = {"/livez": self.readiness.live, "/readyz": self.readiness.ready}
        probe = probes.get(self.path.split("?")[0])
        if probe is None:
            self._answer(404, {"error": f"no such probe {self.path!r}; use /livez or /readyz"})
            return
        ok, report = probe()
        self._answer(200 if ok else 503, report)

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a probe every few seconds is not worth a log line


# -- children: tick files ----------------------------------------------------------------------

class TickFile:
    """In a child: touch ``folder/<pid>`` whenever the claim loop ticked since the last touch."""

    def __init__(self, folder: str, last_tick: Callable[[], float]) -> None:
        self.path = Path(folder) / str(os.getpid())
        self.last_tick = last_tick
        self._seen = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="loom-health-tick", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(TOUCH_EVERY):
            tick = self.last_tick()
            if tick != self._seen:
                self._seen = tick
                try:
                    self.path.touch()
                except OSError:
                    return  # the supervisor (and its folder) is gone


def tick_file_ages(folder: str) -> dict[str, float]:
    """Seconds since each live child's loop last ticked, by pid; files of dead children go."""
    ages = {}
    now = time.time()
    for path in Path(folder).iterdir():
        try:
            pid = int(path.name)
            os.kill(pid, 0)
            ages[f"pid {pid}"] = max(0.0, now - path.stat().st_mtime)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
        except (PermissionError, FileNotFoundError):
            continue
    return ages


# -- wiring for `loom worker` ------------------------------------------------------------------

def add_arguments(parser: Any) -> None:
    import argparse

    parser.add_argument("--health-port", type=int, default=None, metavar="PORT",
                        help="Serve /livez and /readyz on this port (0: any free port; see loom.health).")
    parser.add_argument("--health-host", default=DEFAULT_HOST, help=f"Address of the health endpoint "
                                                                     f"(default {DEFAULT_HOST}).")
    parser.add_argument("--health-stale", type=float, default=None, metavar="SECONDS",
                        help=f"Not ready when a claim loop has not ticked for this long (default "
                             f"{DEFAULT_STALE:g}, or 3 x POLL_INTERVAL if longer).")
    parser.add_argument("--health-dir", default=None, help=argparse.SUPPRESS)


def _stale(options: dict[str, Any], config: Any) -> float:
    return float(options["health_stale"] or max(DEFAULT_STALE, 3 * config.poll_interval))


def _announce(command: Any, server: HealthServer) -> None:
    command.stdout.write(f"loom worker health: http://{server.host}:{server.port}/livez and /readyz")


def serve_worker(command: Any, options: dict[str, Any], worker: Any) -> None:
    """A worker in this process: serve its probes (``--health-port``), or, as a supervisor's
    child (``--health-dir``), keep its tick file fresh."""
    if options.get("health_dir"):
        TickFile(options["health_dir"], lambda: worker.fetcher.last_tick)
    if options.get("health_port") is None or options.get("child"):
        return
    readiness = Readiness(worker.store.alias, _stale(options, worker.config),
                          lambda: {worker.id: time.monotonic() - worker.fetcher.last_tick})
    _announce(command, HealthServer(readiness, options["health_host"], options["health_port"]).start())


class SupervisorProbes:
    """The supervisor's endpoint, answered from its own loop (``handle_pending``), not a thread:
    the supervisor forks its children and must hold no thread when it does. Children touch their
    tick files in ``folder``."""

    def __init__(self, readiness: Readiness, host: str, port: int, folder: str) -> None:
        handler = type("Handler", (_Handler,), {"readiness": readiness})
        self.server = HTTPServer((host, port), handler)
        self.server.timeout = 0
        self.host, self.port = host, self.server.server_address[1]
        self.folder = folder

    def fileno(self) -> int:
        return self.server.fileno()

    def handle_pending(self) -> None:
        import select

        while select.select([self.server], [], [], 0)[0]:
            self.server.handle_request()

    def close(self) -> None:
        self.server.server_close()
        shutil.rmtree(self.folder, ignore_errors=True)


def serve_supervisor(command: Any, options: dict[str, Any], backend: Any) -> SupervisorProbes | None:
    """The supervisor serves the probes from its children's tick files."""
    if options.get("health_port") is None:
        return None
    folder = tempfile.mkdtemp(prefix="loom-health-")
    readiness = Readiness(backend.store.alias, _stale(options, backend.config), lambda: tick_file_ages(folder))
    probes = SupervisorProbes(readiness, options["health_host"], options["health_port"], folder)
    command.stdout.write(f"loom worker health: http://{probes.host}:{probes.port}/livez and /readyz")
    return probes
