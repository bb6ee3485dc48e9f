"""Real servers for the browser tests: the demo site (runserver) and a ``loom worker``, on loopback.

They run the ``example/`` project against a temporary SQLite file, once per module, and only in
the ``LOOM_TEST_DB=sqlite`` run (the demo is a SQLite project; the other runs skip, saying so).
Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright; without it (or Playwright) the
tests skip with the reason, except under CI, where they fail.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example"
CHROMIUM = os.environ.get("LOOM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Longest the servers get to come up, in seconds.
STARTUP_DEADLINE = 40.0
USERNAME, PASSWORD = "demo", "demo-loom"


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the browser tests to run: {reason}")
    print(f"\nSKIPPING browser tests: {reason}")
    pytest.skip(reason)


class Output:
    """Collects a process's output in a thread; ``wait_for(pattern)`` blocks until it appears."""

    def __init__(self, proc: subprocess.Popen, name: str) -> None:
        self.name, self.text, self.changed = name, "", threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self.changed:
                self.text += line
                self.changed.notify_all()

    def wait_for(self, pattern: str, deadline: float) -> None:
        end = time.monotonic() + deadline
        with self.changed:
            while not re.search(pattern, self.text):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.name} did not print {pattern!r} in {deadline}s:\n{self.text[-3000:]}")
                self.changed.wait(remaining)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, name: str) -> tuple[subprocess.Popen, Output]:
    proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, Output(proc, name)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what this fixture started
            proc.wait(5)


# Module scope: the servers, and Playwright's event loop in this thread, end with the browser tests.
@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    if os.environ.get("LOOM_TEST_DB", "sqlite") != "sqlite":
        pytest.skip("browser tests run once, in the LOOM_TEST_DB=sqlite run (the demo is a SQLite project)")
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        unavailable("the playwright package is missing (pip install playwright; no browser download needed)")
    folder = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "LOOM_DEMO_DB": str(folder / "demo.sqlite3"), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for args in (["migrate", "--noinput", "-v", "0"], ["demo_user"]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env, check=True,
                       capture_output=True, timeout=120)
    port = free_port()
    web, web_out = start(["runserver", f"127.0.0.1:{port}", "--noreload"], env, "runserver")
    worker, worker_out = start(["loom", "worker", "--threads", "4", "--grace", "2"], env, "worker")
    try:
        web_out.wait_for(r"Quit the server with", STARTUP_DEADLINE)
        worker_out.wait_for(r"loom worker \S+ started", STARTUP_DEADLINE)
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + STARTUP_DEADLINE
        while True:  # the banner is printed just before the socket is bound
            try:
                urllib.request.urlopen(url + "/", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                threading.Event().wait(0.05)
        yield url
    finally:
        stop(worker)
        stop(web)


@pytest.fixture(scope="module")
def browser(demo_site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshots():
    """Where to save screenshots for a person to look at (LOOM_SCREENSHOTS=dir), else nowhere."""
    folder = os.environ.get("LOOM_SCREENSHOTS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def login(page, base: str, next_path: str) -> None:
    from urllib.parse import quote

    page.goto(f"{base}/admin/login/?next={quote(next_path)}")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")



