"""The wire format shared by network brokers: ``{"g": [groups], "p": payload}`` as compact JSON."""

from __future__ import annotations

import json
from typing import Any


def encode(groups: tuple[str, ...], payload: dict[str, Any]) -> str:
    try:
        return json.dumps({"g": list(groups), "p": payload}, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Event payload for {', '.join(groups)} is not JSON ({exc}); send str, numbers, bools, "
            "None, and lists/dicts of them."
        ) from None
