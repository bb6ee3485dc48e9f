"""Rows a raw statement returned, converted to Python values exactly as the ORM would convert them.

The claim returns its rows from ``UPDATE ... RETURNING`` (one round trip), which the ORM cannot
run. This module gives each column the value a ``TaskRecord`` query would give it, with fast
paths for the three kinds that cost most when done Django's general way, on every claimed row:

- ``JSONText`` columns: decoded once with ``loom.codec`` (the driver hands over text);
- UUIDs: the dashed string loom uses as a task id, whatever the driver returned (SQLite and
  MariaDB: 32 hex digits; PostgreSQL: a ``UUID``);
- datetimes on SQLite: ``datetime.fromisoformat`` of the stored text, or the value sqlite3
  already parsed, made UTC when ``USE_TZ`` (Django's converter parses again with a regular
  expression).

Every other column goes through the converters Django's SQL compiler would apply (the
backend's, then the field's). Converters are worked out once per connection object.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import models

from loom import codec
from loom.records import CLAIM_COLUMNS

_converters: "weakref.WeakKeyDictionary[Any, list[Callable[[Any], Any]]]" = weakref.WeakKeyDictionary()


def _json(value: Any) -> Any:
    return codec.loads(value) if isinstance(value, (str, bytes)) else value


def _uuid(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    text = str(value)
    if len(text) == 32:
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return str(uuid.UUID(text))


def _nullable_uuid(value: Any) -> str | None:
    return None if value is None else _uuid(value)


def _sqlite_datetime(aware: bool) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        # Django's sqlite3 registration may have parsed it already (declared type "datetime").
        parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        return parsed.replace(tzinfo=dt.UTC) if aware and parsed.tzinfo is None else parsed

    return convert


def _django(field: models.Field, connection: Any) -> Callable[[Any], Any]:
    from loom.models import TaskRecord

    column = field.get_col(TaskRecord._meta.db_table)
    funcs = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
    if not funcs:
        return lambda value: value

    def convert(value: Any) -> Any:
        for func in funcs:
            value = func(value, column, connection)
        return value

    return convert


def _for(connection: Any) -> list[Callable[[Any], Any]]:
    found = _converters.get(connection)
    if found is None:
        from loom.models import JSONText, TaskRecord

        found = []
        for name in CLAIM_COLUMNS:
            field = TaskRecord._meta.get_field(name)
            assert isinstance(field, models.Field)
            if isinstance(field, JSONText):
                found.append(_json)
            elif isinstance(field, models.UUIDField):
                found.append(_nullable_uuid if field.null else _uuid)
            elif isinstance(field, models.DateTimeField) and connection.vendor == "sqlite":
                found.append(_sqlite_datetime(settings.USE_TZ))
            else:
                found.append(_django(field, connection))
        _converters[connection] = found
    return found


def rows_as_dicts(connection: Any, rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``CLAIM_COLUMNS`` rows as dicts of Python values (ids as dashed strings)."""
    converters = _for(connection)
    return [{name: convert(value) for name, convert, value in zip(CLAIM_COLUMNS, converters, row)}
            for row in rows]
