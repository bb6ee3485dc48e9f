"""loom.health and ``loom health``: a real worker answers /livez and /readyz, turns unready when
its claim loop stops or its database goes away, and the command exits 0/1 saying why."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.error
import urllib.request

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.app import tasks
from tests.conftest import DB, child_pids, task_table_locked, wait_until
from tests.plain_project import PlainProject

# Seconds without a tick before "not ready", kept short so the tests do not wait long.
STALE = "2"


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def health_url(lines) -> str:
    """The endpoint a starting worker announced (it listens on a free port: --health-port 0)."""
    for line in lines:
        found = re.search(r"loom worker health: (http://[\d.]+:\d+)/livez", line)
        if found:
            return found.group(1)
    raise AssertionError("the worker did not announce its health endpoint:\n" + "".join(lines))


@pytest.mark.skipif(DB != "sqlite", reason="a startproject SQLite site: the sqlite run")
def test_a_plain_worker_with_children_is_live_ready_and_unready_when_a_loop_stops(tmp_path):
    project = PlainProject(tmp_path)
    project.manage("migrate", "-v", "0")
    with project.running("loom", "worker", "--health-port", "0", "--health-host", "127.0.0.1",
                         "--health-stale", STALE) as (worker, lines):
        url = health_url(lines)
        assert get(f"{url}/livez") == (200, {"live": True, "pid": worker.pid})
        ready = wait_until(lambda: (lambda r: r if r[0] == 200 and len(r[1]["claim_loops"]) == 2 else None)(
            get(f"{url}/readyz")), timeout=60, message="both children ready")
        assert ready[1]["problems"] == []
        assert project.manage("loom", "health", "--port", url.rsplit(":", 1)[1]).returncode == 0

        # A child whose loop stops (SIGSTOP: alive, but claiming nothing) makes the worker unready.
        child = child_pids(worker.pid)[0]
        os.kill(child, signal.SIGSTOP)
        try:
            code, report = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(get(f"{url}/readyz")),
                                      timeout=30, message="unready")
            assert any(f"claim loop pid {child} last ticked" in p for p in report["problems"]), report
            assert get(f"{url}/livez")[0] == 200  # the process still answers
            done = project.manage("loom", "health", "--port", url.rsplit(":", 1)[1], check=False)
            assert done.returncode == 1 and f"claim loop pid {child}" in done.stdout + done.stderr
        finally:
            os.kill(child, signal.SIGCONT)
        wait_until(lambda: get(f"{url}/readyz")[0] == 200, timeout=30, message="ready again")
        assert get(f"{url}/nope")[0] == 404


def test_an_in_process_worker_turns_unready_when_its_database_stops(private_postgres, start_worker):
    worker = start_worker("--processes", "0", "--health-port", "0", "--health-host", "127.0.0.1",
                          env=private_postgres.env)
    worker.wait_started()
    url = health_url(worker.output)
    wait_until(lambda: get(f"{url}/readyz")[0] == 200, timeout=30, message="ready")
    private_postgres.server.halt()
    try:
        code, report = get(f"{url}/readyz")
        assert code == 503 and any("database 'default' does not answer" in p for p in report["problems"]), report
        assert get(f"{url}/livez")[0] == 200
    finally:
        private_postgres.server.resume()
    wait_until(lambda: get(f"{url}/readyz")[0] == 200, timeout=60, message="ready after the database is back")
    worker.signal()
    assert worker.wait() == 0, worker.text


@pytest.mark.django_db(transaction=True)
def test_loom_health_asks_the_database_for_live_workers_and_waiting_tasks(start_worker, capsys):
    with pytest.raises(CommandError, match="no worker has sent a heartbeat") as failed:
        call_command("loom", "health")
    assert failed.value.returncode == 1
    tasks.add.enqueue(1, 2)  # due now, and nobody consumes it
    with pytest.raises(CommandError, match=r"a due task has waited \d+s \(more than --max-wait 0s\)"):
        call_command("loom", "health", "--max-wait", "0")

    worker = start_worker("--processes", "0")
    worker.wait_started()
    from loom.models import TaskRecord, WorkerRecord

    wait_until(lambda: not TaskRecord.objects.filter(status="READY").exists(), message="the task ran")
    # Registration is the heartbeat's first beat, in its own thread: on a busy machine the fetcher
    # can claim and run the task before it lands.
    wait_until(lambda: WorkerRecord.objects.exists(), message="the worker to register")
    call_command("loom", "health")  # no exception: exit 0
    out = capsys.readouterr().out
    assert "ok: 1 worker(s) sent a heartbeat" in out and "ok: the oldest due task waited 0.0s" in out
    worker.signal()
    assert worker.wait() == 0


def test_loom_health_port_says_when_nothing_answers():
    with pytest.raises(CommandError, match="does not answer.*--health-port"):
        call_command("loom", "health", "--port", "9", "--timeout", "1")


@pytest.mark.skipif(DB == "sqlite", reason="SQLite has no table lock that holds up readers (WAL)")
@pytest.mark.django_db(transaction=True)
def test_the_supervisor_answers_livez_while_the_task_table_is_locked(start_worker):
    """A migration's ALTER TABLE (here LOCK TABLE) holds loom's table for as long as it runs. The
    supervisor's loop, which answers /livez, forwards signals and restarts children, reads that
    table every second (hard time limits): its reads give up after a second instead of waiting,
    so a kubelet's liveness probe does not restart a healthy worker during a migration."""
    import time

    worker = start_worker("--processes", "1", "--health-port", "0", "--health-host", "127.0.0.1")
    worker.wait_started()
    url = health_url(worker.output)
    took = []
    with task_table_locked():
        until = time.monotonic() + 5  # several of the supervisor's hard-limit reads
        while time.monotonic() < until:
            began = time.monotonic()
            assert get(f"{url}/livez")[0] == 200
            took.append(time.monotonic() - began)
    assert max(took) < 2.5, took
    worker.signal()
    assert worker.wait(timeout=60) == 0, worker.text
