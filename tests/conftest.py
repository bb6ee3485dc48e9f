"""Per-database test setup: reachability, and helpers to run a real worker subprocess."""

from __future__ import annotations

import os
import socket

import pytest

DB = os.environ.get("LOOM_TEST_DB", "sqlite")
SERVERS = {"postgresql": ("127.0.0.1", 5432), "mysql": ("127.0.0.1", 3306)}


def pytest_configure(config):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    config.addinivalue_line("markers", "contract: Django tasks backend contract (also run on Django 6.0)")
    if DB in SERVERS:
        host, port = SERVERS[DB]
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            reason = f"{DB} at {host}:{port} is unreachable ({exc})"
            if os.environ.get("CI"):
                pytest.exit(f"CI needs {reason}", returncode=1)
            print(f"\nSKIPPING the {DB} run: {reason}. Start the server to run it.")
            pytest.exit(f"skipped: {reason}", returncode=0)


def pytest_report_header(config):
    return f"loom test database: {DB}"
