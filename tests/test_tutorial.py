"""docs/tutorial.md, done as a reader does it: every command in it is run, in order, in a fresh
folder, and the output it shows is checked.

How the page is read:

- In a ```` ```console ```` block, a line ``$ command`` is run with ``sh -c`` in the current folder
  (``cd`` changes it); the lines after it are its output. Each output line is looked for in what the
  command printed (spaces squeezed); a line with ``…`` is not checked. ``loom status`` is run
  again until its output matches (a reader is told to do so), with a deadline.
- ``loom worker`` without ``--burst`` and ``runserver`` keep running (the page starts them in other
  terminals): they are started in the background, waited for (a worker alive in ``loom status``;
  the site answering), restarted when the page starts them again, and stopped at the end.
- A code block whose first line is a comment naming a file (``# shop/tasks.py`` or
  ``{# shop/templates/shop/report.html #}``) writes that file in the project folder; ``(add at the
  end)`` after the name appends instead.
- A ``manage.py`` command must not print system check warnings: the page's settings are complete.
- ``python -m pip install django-loom`` runs with ``--no-index``: the environment running this test
  already has this checkout installed as django-loom (``make`` did it), so pip confirms the name
  without the network.
- Port 8000 becomes a free port, and the pages the reader is told to open are opened: the report
  page's bar must reach 100%, and the dashboard must let the new superuser in and show the tasks.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import django
import pytest

from tests.browser.conftest import Output, free_port
from tests.conftest import DB, ROOT, wait_until

pytestmark = pytest.mark.skipif(DB != "sqlite",
                                reason="the tutorial's project is SQLite: it runs once, in the sqlite run")
# The tutorial is written for Django 6.1 (django.tasks, @task(max_attempts=...)); the runs on 6.0 and 5.2
# test loom itself, not the tutorial.
pytestmark = [pytestmark, pytest.mark.skipif(django.VERSION < (6, 1), reason="the tutorial targets Django 6.1")]

TUTORIAL = ROOT / "docs" / "tutorial.md"
# Longest a command, a rerun of `loom status`, or a server start may take.
DEADLINE = 90.0
FILE_COMMENT = re.compile(r"^(?:#|\{#)\s*(\S+)(\s+\(add at the end\))?\s*(?:#\})?$")


def steps(text: str) -> list[tuple[str, object]]:
    """("run", (command, expected lines)) and ("file", (path, content, append)) in page order."""
    found = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        lines = body.splitlines()
        if lang == "console":
            for line in lines:
                if line.startswith("$ "):
                    found.append(("run", (line[2:], [])))
                elif line.strip():
                    found[-1][1][1].append(line)
        elif lines and (match := FILE_COMMENT.match(lines[0].strip())):
            found.append(("file", (match[1], "\n".join(lines[1:]) + "\n", bool(match[2]))))
    return found


def squeezed(text: str) -> str:
    return " ".join(text.split())


class Reader:
    """Does what the page says, in a folder of its own."""

    def __init__(self, folder: Path, port: int) -> None:
        self.cwd, self.port = folder, port
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    "PYTHONUNBUFFERED": "1"}
        for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "LOOM_TEST_DB", "LOOM_TEST_DB_NAME"):
            self.env.pop(name, None)
        self.servers: dict[str, tuple[subprocess.Popen, Output]] = {}

    def command(self, line: str) -> str:
        line = line.replace("8000", str(self.port))
        if line == "python -m pip install django-loom":
            line = "python -m pip install --no-index django-loom"
        if re.fullmatch(r"python manage.py runserver", line):
            line += f" 127.0.0.1:{self.port}"
        return line

    def run(self, line: str, expected: list[str]) -> None:
        if line.startswith("cd "):
            self.cwd = self.cwd / line[3:]
            return
        command = self.command(line)
        if (kind := self.server_kind(command)) is not None:
            self.start(kind, command)
            return
        checked = [squeezed(e) for e in expected if "…" not in e]
        end = time.monotonic() + DEADLINE
        while True:
            done = subprocess.run(["sh", "-c", command], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                  timeout=DEADLINE)
            assert done.returncode == 0, f"$ {line}\n{done.stdout}{done.stderr}"
            assert "manage.py" not in command or "System check identified" not in done.stdout + done.stderr, \
                f"$ {line} warns the reader:\n{done.stdout}{done.stderr}"
            missing = [e for e in checked if e not in squeezed(done.stdout)]
            if not missing:
                return
            if "loom status" not in command or time.monotonic() > end:
                raise AssertionError(f"$ {line} printed\n{done.stdout}\nwithout {missing}")
            time.sleep(0.5)  # a reader runs `loom status` again; the worker's progress is the event

    @staticmethod
    def server_kind(command: str) -> str | None:
        if "runserver" in command:
            return "site"
        if "loom worker" in command and "--burst" not in command:
            return "worker"
        return None

    def start(self, kind: str, command: str) -> None:
        self.stop(kind)  # the page says to stop the old one first (Ctrl-C)
        proc = subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        out = Output(proc, kind)
        self.servers[kind] = (proc, out)
        if kind == "worker":
            wait_until(lambda: self.workers_alive() or proc.poll() is not None, DEADLINE, 0.2, "a worker to beat")
            assert proc.poll() is None, f"$ {command} exited:\n{out.text}"
        else:
            wait_until(lambda: self.answers("/admin/login/"), DEADLINE, 0.1, "the site to answer")

    def workers_alive(self) -> int:
        done = subprocess.run([sys.executable, "manage.py", "loom", "status", "--json"], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=DEADLINE)
        return sum(w["alive"] for w in json.loads(done.stdout)["workers"]) if done.returncode == 0 else 0

    def answers(self, path: str) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2).close()
            return True
        except OSError:
            return False

    def stop(self, kind: str) -> None:
        if kind in self.servers:
            proc, _ = self.servers.pop(kind)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in that terminal
            try:
                proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # leave nothing running, then say so
                raise

    def stop_all(self) -> None:
        for kind in list(self.servers):
            self.stop(kind)


def open_report(reader: Reader) -> None:
    """What the reader sees at /report/: a bar whose status reaches SUCCESSFUL at 100%."""
    page = urllib.request.urlopen(f"http://127.0.0.1:{reader.port}/report/", timeout=10).read().decode()
    assert 'class="loom-progress' in page and "loom/loom.js" in page, page
    status_url = re.search(r'data-loom-status="([^"]+)"', page)[1]

    def final() -> dict | None:
        state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{reader.port}{status_url}", timeout=5))
        return state if state["final"] else None

    state = wait_until(final, DEADLINE, 0.2, "the report to finish")
    assert (state["status"], state["percent"], state["message"]) == ("SUCCESSFUL", 100, "row 40 of 40")


def open_dashboard(reader: Reader) -> None:
    """Sign in as the new superuser; the task list shows the tasks with their errors."""
    base = f"http://127.0.0.1:{reader.port}"
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = browser.open(f"{base}/loom/").read().decode()  # sent to the admin's login page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login)[1]
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": "change-me",
                                   "next": "/loom/"}).encode()
    overview = browser.open(urllib.request.Request(f"{base}/admin/login/?next=/loom/", data=form,
                                                   headers={"Referer": f"{base}/admin/login/"})).read().decode()
    assert "Throughput" in overview and "Workers alive" in overview
    tasks = browser.open(f"{base}/loom/tasks/").read().decode()
    assert "shop.tasks.fetch_rate" in tasks and "ZeroDivisionError: division by zero" in tasks
    link = r'href="(/loom/tasks/[0-9a-f-]+/)" class="ld-task-link"><span class="ld-mono">shop.tasks.fetch_rate'
    rate = re.search(link, tasks)[1]
    page = browser.open(base + rate).read().decode()
    assert "ConnectionError: the rates service timed out (attempt 1)" in page and ">Successful<" in page


def test_every_command_of_the_tutorial(tmp_path):
    reader = Reader(tmp_path, free_port())
    text = TUTORIAL.read_text()
    try:
        for kind, step in steps(text):
            if kind == "file":
                path, content, append = step
                target = reader.cwd / path
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("a" if append else "w") as f:
                    f.write(("\n" if append else "") + content)
            else:
                reader.run(*step)
        assert "http://127.0.0.1:8000/report/" in text and "http://127.0.0.1:8000/loom/" in text
        open_report(reader)
        open_dashboard(reader)
    finally:
        reader.stop_all()


def test_the_page_is_read_as_described():
    found = steps(TUTORIAL.read_text())
    commands = [s[0] for kind, s in found if kind == "run"]
    files = [s[0] for kind, s in found if kind == "file"]
    assert commands[0] == "python -m pip install django-loom" and "python manage.py runserver" in commands
    assert files == ["mysite/settings.py", "shop/tasks.py", "shop/tasks.py", "shop/tasks.py", "shop/views.py",
                     "shop/templates/shop/report.html", "mysite/urls.py"]
    assert shlex.split(commands[-1])[0] == "DJANGO_SUPERUSER_PASSWORD=change-me"
