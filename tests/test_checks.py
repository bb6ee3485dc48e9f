"""System checks: what ``manage.py check`` tells a user about loom's settings."""

from __future__ import annotations

import pytest
from django.db import connections

from loom.checks import check_sqlite_transactions
from tests.conftest import DB


@pytest.mark.skipif(DB != "sqlite", reason="about SQLite settings (the LOOM_TEST_DB=sqlite run)")
def test_plain_sqlite_settings_get_a_warning_with_what_to_set():
    [warning] = check_sqlite_transactions()
    assert warning.id == "loom.W003" and "database is locked" in warning.msg
    assert '"transaction_mode": "IMMEDIATE"' in warning.hint
    options = connections.settings["default"].setdefault("OPTIONS", {})
    options["transaction_mode"] = "IMMEDIATE"
    try:
        assert check_sqlite_transactions() == []
    finally:
        del options["transaction_mode"]


@pytest.mark.skipif(DB == "sqlite", reason="the other databases (their runs)")
def test_server_databases_get_no_sqlite_warning():
    assert check_sqlite_transactions() == []
