"""The one JSON codec for what loom stores: task arguments, return values and errors.

Encoding is strict (``allow_nan=False``: no NaN or Infinity, which no database's JSON accepts)
and ASCII-only (``ensure_ascii``): every character outside ASCII, including NUL and lone
surrogates that no database text type can hold, travels as a ``\\uXXXX`` escape. The stored text
is kept verbatim (a ``json`` column on PostgreSQL, text elsewhere; see ``loom.models.JSONText``),
so a value reads back exactly as Django's ImmediateBackend would return it: ``1e16`` stays a
float, ``"\\u0000"`` stays a NUL, on every database.

Decoding is plain ``json.loads``. Nothing here knows about the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from loom.compat import normalize_json

_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Encode a value already made of JSON types; ValueError/TypeError if it is not one."""
    return _encoder.encode(value)


def loads(text: str | bytes) -> Any:
    return json.loads(text)


def normalize(value: Any) -> tuple[Any, str]:
    """Django's JSON normalisation (tuples become lists, ...) and its encoding, in one pass:
    what the task will see and what is stored. Raises TypeError/ValueError for non-JSON."""
    normalized = normalize_json(value)
    return normalized, dumps(normalized)


def pg_array(values: Iterable[str | None]) -> str:
    """A PostgreSQL array literal of text values (NULL for None), for a statement that takes a
    whole column as one parameter (``unnest(%s::text[])``): built in one pass of string
    operations, where the driver would adapt every element on its own, several times slower."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"
