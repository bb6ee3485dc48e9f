"""Real servers for the browser tests: the demo site (runserver) and a ``loom worker``, on loopback.

They run the ``example/`` project (startproject's SQLite settings, no OPTIONS) against a
temporary SQLite file, once per module, and only in the ``LOOM_TEST_DB=sqlite`` run (the demo is
a SQLite project; the other runs skip, saying so). Chromium is Debian's ``/usr/bin/chromium``
driven by Playwright; without it (or Playwright) the tests skip with the reason, except under
CI, where they fail.

A test that fails saves a screenshot of each page it opened under ``test-artifacts/browser/``
(gitignored). ``LOOM_SCREENSHOTS=dir`` also saves the screenshots the tests take at each step.
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
# Where a failing test leaves its screenshots.
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("LOOM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Longest the servers get to come up, in seconds.
STARTUP_DEADLINE = 40.0
USERNAME, PASSWORD = "demo", "demo-loom"
# Output of the servers of the running module, printed when a test fails.
SERVER_OUTPUT: dict[str, "Output"] = {}


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
    SERVER_OUTPUT.update(runserver=web_out, worker=worker_out)
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


class Proxy:
    """A TCP proxy on loopback in front of the demo site that a test can cut, like a network that
    drops every connection and refuses new ones until it is restored."""

    def __init__(self, target: str) -> None:
        self.target = ("127.0.0.1", int(target.rsplit(":", 1)[1]))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.up = threading.Event()
        self.up.set()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.fixture
def proxy(demo_site):
    proxied = Proxy(demo_site)
    yield proxied
    proxied.close()


@pytest.fixture(scope="module")
def browser(demo_site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.failed_in_call = report.failed


@pytest.fixture
def contexts(browser, request):
    """New browser contexts for a test; on failure, every open page is saved as a screenshot."""
    opened = []

    def new(width: int = 1280, height: int = 860):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(30_000)
        opened.append(context)
        return context

    yield new
    if getattr(request.node, "failed_in_call", False):
        for name, output in SERVER_OUTPUT.items():
            print(f"--- {name}, last lines ---\n{output.text[-2500:]}")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
        for i, shot in enumerate(p for context in opened for p in context.pages):
            path = ARTIFACTS / f"{name}-{i}.png"
            try:
                shot.screenshot(path=path, full_page=True)
                print(f"screenshot of the failure: {path}")
            except Exception as exc:  # a crashed page: the failure itself says more
                print(f"no screenshot of page {i}: {exc}")
    for context in opened:
        context.close()


@pytest.fixture
def page(contexts):
    return contexts().new_page()


@pytest.fixture
def shot():
    """``shot(page, name)`` saves a screenshot for a person to look at when LOOM_SCREENSHOTS names a
    folder (the report of a change lists them); otherwise it does nothing."""
    folder = os.environ.get("LOOM_SCREENSHOTS")

    def take(page, name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=Path(folder) / f"{name}.png", full_page=True)

    return take
