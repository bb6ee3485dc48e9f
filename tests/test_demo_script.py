"""``scripts/demo.sh`` (``make demo``), run as a person runs it: the URL only once the site
answers, Ctrl-C stops everything, and no worker outlives the script when the site cannot run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import django
import pytest

from tests.browser.conftest import Output, free_port
from tests.conftest import DB, ROOT, child_pids, wait_until

pytestmark = pytest.mark.skipif(DB != "sqlite", reason="the demo is a SQLite project: it runs once, in the sqlite run")
# The demo is written for Django 6.1 (django.tasks, @task(max_attempts=...)); the runs on 6.0 and 5.2
# test loom itself, not the demo.
pytestmark = [pytestmark, pytest.mark.skipif(django.VERSION < (6, 1), reason="the demo targets Django 6.1")]

# Longest the demo gets to print its URL, and to stop.
DEADLINE = 90.0


def leftovers(marker: str) -> list[int]:
    """Processes whose environment names this test's database: anything the script left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def servers(script: int) -> dict[str, int]:
    """The script's runserver and worker, by name."""
    found = {}
    for pid in child_pids(script):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"runserver" in command:
            found["runserver"] = pid
        elif b"worker" in command:
            found["worker"] = pid
    return found


@pytest.fixture
def demo(tmp_path):
    """Start ``sh scripts/demo.sh`` in its own session (as a terminal would) on a free port."""
    started = []
    marker = str(tmp_path / "demo.sqlite3")

    def start(port: int):
        env = {**os.environ, "PORT": str(port), "LOOM_DEMO_DB": marker, "PYTHONUNBUFFERED": "1"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        proc = subprocess.Popen(["sh", "scripts/demo.sh", sys.executable], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        started.append(proc)
        return proc, Output(proc, "demo.sh")

    start.marker = marker
    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for pid in leftovers(marker):  # only what this test started: its environment names tmp_path
        os.kill(pid, signal.SIGKILL)


def test_the_url_is_printed_once_the_site_answers_and_ctrl_c_stops_both(demo):
    port = free_port()
    proc, out = demo(port)
    out.wait_for(r"loom demo: http://127\.0\.0\.1:\d+/", DEADLINE)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:  # at once: no retry
        assert response.status == 200
    assert set(servers(proc.pid)) == {"runserver", "worker"}
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    assert proc.wait(DEADLINE) == 0
    wait_until(lambda: not leftovers(demo.marker), DEADLINE, 0.1, "the site and the worker to stop")


def test_a_taken_port_is_refused_before_anything_starts(demo):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc, out = demo(taken.getsockname()[1])
        assert proc.wait(DEADLINE) == 1
    out.wait_for(r"port \d+ is taken by another program; pick another: PORT=8001 make demo", 5)
    assert "http://" not in out.text and not leftovers(demo.marker)


def test_when_the_site_exits_first_the_worker_is_stopped_too(demo):
    port = free_port()
    proc, out = demo(port)
    out.wait_for(r"loom demo: http://", DEADLINE)
    os.kill(servers(proc.pid)["runserver"], signal.SIGKILL)
    assert proc.wait(DEADLINE) == 1
    out.wait_for(r"loom demo: the web server exited; stopping", 5)
    wait_until(lambda: not leftovers(demo.marker), DEADLINE, 0.1, "the worker to stop")
