"""Smoke test of an installed django-loom wheel, run from outside the source tree (scripts/smoke_wheel.sh).

It checks that loom comes from site-packages with its type hints, SQL, templates and static
files; that each extra brought what it promises; and that a startproject site enqueues tasks and
runs them with ``loom worker --burst``. Prints one line per check; any failure exits non-zero.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path.cwd()


def say(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        sys.exit(f"smoke: FAILED {' '.join(args)}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def installed_package() -> None:
    import loom

    where = Path(loom.__file__).resolve().parent
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert site in where.parents, f"loom imports from {where}, not from {site}"
    for relative in ("py.typed", "store/sql/postgresql/claim.sql", "store/sql/sqlite/claim.sql",
                     "store/sql/mysql/claim.sql", "templates/loom/dashboard/base.html", "static/loom/loom.js",
                     "migrations/0001_initial.py"):
        assert (where / relative).exists(), f"the wheel lacks loom/{relative}"
    say(f"loom installed in {where} with py.typed, SQL, templates, static files and migrations")


# Each extra, and what it must make importable.
EXTRAS = {
    "backport": ["django_tasks"],
    "postgresql": ["psycopg"],
    "mysql": ["MySQLdb"],
    "pymysql": ["pymysql"],
    "redis": ["redis", "loom.events.redis"],
    "prometheus": ["prometheus_client"],
    "channels": ["channels.layers", "channels_redis.core"],
    "otel": ["opentelemetry.trace", "opentelemetry.propagate"],
}


def _backport() -> bool:
    import django

    return django.VERSION < (6, 0)


def extras() -> None:
    """Each module imports, and its distribution is declared by that extra itself (so one extra
    cannot pass thanks to another installed beside it)."""
    import re
    from importlib.metadata import packages_distributions, requires

    declared: dict[str, set[str]] = {}
    for line in requires("django-loom") or []:
        name = re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower().replace("_", "-")
        found = re.search(r'extra == "([^"]+)"', line)
        declared.setdefault(found.group(1) if found else "", set()).add(name)
    owners = packages_distributions()
    loom_modules = [name for modules in EXTRAS.values() for name in modules if name.startswith("loom.")]
    for extra, modules in EXTRAS.items():
        if extra not in declared or (extra == "backport" and not _backport()):
            continue
        for name in modules:
            importlib.import_module(name)
            if name in loom_modules:
                continue
            dists = {d.lower().replace("_", "-") for d in owners.get(name.split(".")[0], [])}
            assert dists & declared.get(extra, set()), f"[{extra}] does not declare {dists} (for {name})"
        say(f"[{extra}] declares and brings {', '.join(modules)}")


def project() -> None:
    site = HERE / "site"
    site.mkdir()
    run("-m", "django", "startproject", "mysite", str(site), cwd=HERE)
    (site / "shop").mkdir()
    (site / "shop" / "__init__.py").write_text("")
    import django

    backport = django.VERSION < (6, 0)  # Django 5.2: the user writes django_tasks
    (site / "shop" / "tasks.py").write_text(
        f"from {'django_tasks' if backport else 'django.tasks'} import task\n\n\n@task\ndef add(a, b):\n"
        "    return a + b\n\n\n@task\nasync def shout(word):\n    return word.upper()\n")
    apps = ["django_tasks", "loom", "shop"] if backport else ["loom", "shop"]
    with open(site / "mysite" / "settings.py", "a") as settings:
        settings.write(f'\nINSTALLED_APPS += {apps!r}\n'
                       'TASKS = {"default": {"BACKEND": "loom.backends.DatabaseBackend"}}\n'
                       'LOOM_OPENTELEMETRY = True\n'
                       'LOOM_EVENTS = {"CHANNELS_BRIDGE": False}\n')
    run("manage.py", "migrate", "-v", "0", cwd=site)
    run("manage.py", "check", cwd=site)
    code = ("import json\nfrom shop.tasks import add, shout\n"
            "print(json.dumps([add.enqueue(2, 3).id, shout.enqueue('hi').id]))\n")
    ids = json.loads(run("manage.py", "shell", "-c", code, cwd=site).strip().splitlines()[-1])
    run("manage.py", "loom", "worker", "--burst", cwd=site)
    code = ("import json\nfrom shop.tasks import add, shout\n"
            f"print(json.dumps([add.get_result({ids[0]!r}).return_value,\n"
            f"                  shout.get_result({ids[1]!r}).return_value]))\n")
    values = json.loads(run("manage.py", "shell", "-c", code, cwd=site).strip().splitlines()[-1])
    assert values == [5, "HI"], values
    say(f"a Django {django.get_version()} startproject site enqueued two tasks and `loom worker --burst` "
        "ran them: [5, 'HI']")


def main() -> None:
    assert not (HERE / "loom").exists() and "PYTHONPATH" not in os.environ, "run me outside the source tree"
    say(f"testing {sys.argv[1] if len(sys.argv) > 1 else 'the installed wheel'}")
    installed_package()
    extras()
    project()
    say("all good")


if __name__ == "__main__":
    main()
