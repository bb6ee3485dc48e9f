"""A project as a user makes it: ``django-admin startproject``, then the lines the README asks for.

Its settings are startproject's own (SQLite file with no OPTIONS, Django's default logging) plus
``INSTALLED_APPS``/``TASKS`` and whatever a test appends; its tasks are written with the import a
user of this Django writes (``django_tasks`` on 5.2, ``django.tasks`` on 6). Commands run as
``python manage.py ...`` subprocesses in the project's folder, with loom importable from this
checkout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
# What a user of this Django writes in tasks.py and INSTALLED_APPS.
TASK_IMPORT = "from django_tasks import task" if django.VERSION < (6, 0) else "from django.tasks import task"
TASK_APPS = ["django_tasks", "loom"] if django.VERSION < (6, 0) else ["loom"]


# A task that fails its first run and succeeds on the second (retried where @task takes options).
FLAKY_TASK = f"""
@task({"max_attempts=2, retry_backoff=0" if django.VERSION < (6, 0) or django.VERSION >= (6, 1) else ""})
def flaky(marker):
    import os
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("first run fails")
    return "second run"
"""


class PlainProject:
    def __init__(self, where: Path, name: str = "mysite") -> None:
        self.dir = where / name
        self.dir.mkdir(parents=True)
        self.name = name
        made = subprocess.run([sys.executable, "-m", "django", "startproject", name, str(self.dir)],
                              env=self.env(), capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        self.settings = self.dir / name / "settings.py"
        self.append_settings(f"""
            INSTALLED_APPS += {TASK_APPS!r} + ["shop"]
            TASKS = {{"default": {{"BACKEND": "loom.backends.DatabaseBackend"}}}}
        """)
        (self.dir / "shop").mkdir()
        (self.dir / "shop" / "__init__.py").write_text("")

    def append_settings(self, text: str) -> None:
        with self.settings.open("a") as f:
            f.write(textwrap.dedent(text))

    def write(self, relative: str, text: str) -> Path:
        path = self.dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).replace("{TASK_IMPORT}", TASK_IMPORT))
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOOM_TEST"))}
        env["PYTHONPATH"] = os.pathsep.join([str(self.dir), str(ROOT)])
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "manage.py", *args]

    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(*args), cwd=self.dir, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def popen(self, *args: str) -> subprocess.Popen:
        """``manage.py *args`` as a server: output (stdout and stderr) on ``.stdout``."""
        return self.popen_python("manage.py", *args)

    def popen_python(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *args], cwd=self.dir, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def shell(self, code: str, timeout: float = 120) -> str:
        """Run Python in ``manage.py shell`` and return what it printed."""
        return self.manage("shell", "-c", textwrap.dedent(code), timeout=timeout).stdout

    @contextmanager
    def running(self, *args: str,
                ready: str = "loom worker supervisor") -> Iterator[tuple[subprocess.Popen, list[str]]]:
        """``manage.py *args`` as a server: yields once it printed a line containing ``ready``, with
        the lines so far (the rest are added when it stops); on leaving, SIGTERM, and it must exit 0."""
        proc = self.popen(*args)
        lines: list[str] = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if ready in line:
                    break
            else:
                raise AssertionError(f"manage.py {' '.join(args)} never printed {ready!r}:\n{''.join(lines)}")
            yield proc, lines
            proc.send_signal(signal.SIGTERM)
            rest, _ = proc.communicate(timeout=60)
            lines.append(rest)
            assert proc.returncode == 0, "".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
