"""Venvs: one virtualenv per tool under ``bench/.venvs/<name>``, from ``requirements/<name>.txt``.

A venv is (re)installed when its requirements file changed since the last install (a hash is
kept in ``.venvs/<name>/.installed``); for ``loom`` the repository's ``pyproject.toml`` counts
too, since loom is installed from the work tree (``pip install -e``) with its declared
dependencies. Packages come from the package index through pip; nothing else is fetched. The
runner venv itself is made by the Makefile, which needs it to start this program.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"


def python_of(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def _fingerprint(name: str) -> str:
    digest = hashlib.sha256((BENCH / "requirements" / f"{name}.txt").read_bytes())
    if name == "loom":
        digest.update((REPO / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def ensure(name: str, base_python: str, log: Path) -> None:
    """Create or update the venv ``name``; raises CalledProcessError with pip's log on failure."""
    stamp = VENVS / name / ".installed"
    fingerprint = _fingerprint(name)
    if stamp.exists() and stamp.read_text() == fingerprint and python_of(name).exists():
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        if not python_of(name).exists():
            subprocess.run([base_python, "-m", "venv", str(VENVS / name)], check=True,
                           stdout=out, stderr=subprocess.STDOUT)
        pip = [str(python_of(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(BENCH / "requirements" / f"{name}.txt")], check=True,
                       stdout=out, stderr=subprocess.STDOUT, timeout=900)
        if name == "loom":
            subprocess.run([*pip, "-e", str(REPO)], check=True, stdout=out,
                           stderr=subprocess.STDOUT, timeout=900)
    stamp.write_text(fingerprint)


def base_python() -> str:
    """The interpreter the runner venv was made from (a Python >= 3.12)."""
    return getattr(sys, "_base_executable", None) or sys.executable
