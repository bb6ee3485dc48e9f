"""Rows a raw statement returned, converted to Python values exactly as the ORM would convert them.

The claim returns its rows from ``UPDATE ... RETURNING`` (one round trip), which the ORM cannot
run; this module applies the same converters Django's SQL compiler applies to a ``TaskRecord``
query (the backend's, then the field's ``from_db_value``), so UUIDs, datetimes and JSON read the
same on every database. Converters are looked up once per connection object.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from loom.records import CLAIM_COLUMNS

_converters: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()


def _for(connection) -> list:
    found = _converters.get(connection)
    if found is None:
        from loom.models import TaskRecord

        found = []
        for name in CLAIM_COLUMNS:
            field = TaskRecord._meta.get_field(name)
            column = field.get_col(TaskRecord._meta.db_table)
            funcs = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            found.append((name, column, funcs))
        _converters[connection] = found
    return found


def rows_as_dicts(connection, rows: Iterable[tuple]) -> list[dict[str, Any]]:
    """``CLAIM_COLUMNS`` rows as dicts of Python values (ids as dashed strings)."""
    converters = _for(connection)
    result = []
    for row in rows:
        values = {}
        for (name, column, funcs), value in zip(converters, row):
            for func in funcs:
                value = func(value, column, connection)
            values[name] = value
        values["id"] = str(values["id"])
        result.append(values)
    return result
