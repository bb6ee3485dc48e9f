"""Template tags: ``{% load loom %}`` then ``{% loom_assets %}`` once per page and
``{% loom_progress result %}`` for a live progress bar of a task (a TaskResult or its id).

The bar is rendered with the task's current state from its row, so it is right without
JavaScript; ``loom.js`` then follows the task's event stream (``loom.sse``) and falls back to
polling its status URL when server-sent events are unavailable. The stream and status URLs carry
a signed token for that one task, so rendering the tag is what grants a viewer access to it:
render it only for viewers who may see the task. The tag needs ``loom.urls`` included.

Filters for people: ``loom_ago`` ("20 s ago"), ``loom_seconds`` ("5 ms"), ``loom_json`` (one line
when short).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template
from django.templatetags.static import static
from django.utils import timezone
from django.utils.html import format_html

from loom import sse
from loom.compat import TaskResult

register = template.Library()

# Longest JSON shown on one line by ``loom_json``.
JSON_LINE = 100


@register.simple_tag
def loom_assets() -> str:
    """The stylesheet and script behind ``{% loom_progress %}``."""
    return format_html('<link rel="stylesheet" href="{}"><script src="{}" defer></script>',
                       static("loom/loom.css"), static("loom/loom.js"))


@register.inclusion_tag("loom/progress.html")
def loom_progress(result: TaskResult | str, label: str = "", backend: str = "default") -> dict:
    """A live progress bar for one task."""
    if isinstance(result, TaskResult):
        task_id, backend = str(result.id), result.backend
    else:
        task_id = str(result)
    state = sse.snapshot(task_id, backend) or {"status": "UNKNOWN", "task": "", "task_id": task_id}
    return progress_bar(state, label, sse.stream_url(task_id, backend=backend),
                        sse.status_url(task_id, backend=backend))


def progress_bar(state: dict, label: str = "", events_url: str = "", status_url: str = "") -> dict:
    """The context of ``loom/progress.html`` for a snapshot payload. Without URLs the bar follows
    nothing by itself: the dashboard re-renders it from the row instead."""
    percent = 100 if state["status"] == "SUCCESSFUL" else state.get("percent")
    return {
        "task_id": state.get("task_id", ""),
        "label": label or state.get("task", "").rsplit(".", 1)[-1],
        "state": state,
        "percent": percent,
        "events_url": events_url,
        "status_url": status_url,
    }


@register.filter
def loom_status_class(status: str) -> str:
    """CSS modifier for a status pill: ``loom-status--failed`` etc."""
    return f"loom-status--{str(status).lower()}"


@register.filter
def loom_ago(value: datetime | None) -> str:
    """How long ago, coarse enough to change at most every ten seconds: "just now", "20 s ago",
    "3 min ago", "2 h ago", "4 days ago" (never "0 minutes ago")."""
    if value is None:
        return "—"
    seconds = (timezone.now() - value).total_seconds()
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return "just now" if seconds < 10 else f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{max(10, int(seconds // 10 * 10))} s" if seconds >= 10 else f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    days = int(seconds // 86400)
    return f"{days} day{'' if days == 1 else 's'}"


@register.filter
def loom_seconds(value: float | None) -> str:
    """A duration for people: "5 ms", "1.25 s", "2 min 5 s"."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.2f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


@register.filter
def loom_json(value: Any) -> str:
    """JSON on one line when it is short, indented when it is not (a list of eight symbols is one line)."""
    flat = json.dumps(value, ensure_ascii=False)
    return flat if len(flat) <= JSON_LINE else json.dumps(value, indent=2, ensure_ascii=False)
