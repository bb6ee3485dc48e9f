"""Template tags: ``{% load loom %}`` then ``{% loom_assets %}`` once per page and
``{% loom_progress result %}`` for a live progress bar of a task (a TaskResult or its id).

The bar is rendered with the task's current state from its row, so it is right without
JavaScript; ``loom.js`` then follows the task's event stream (``loom.sse``) and falls back to
polling its status URL when server-sent events are unavailable. The stream and status URLs carry
a signed token for that one task, so rendering the tag is what grants a viewer access to it:
render it only for viewers who may see the task. The tag needs ``loom.urls`` included.
"""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.utils.html import format_html

from loom import sse
from loom.compat import TaskResult

register = template.Library()


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
    state = sse.snapshot(task_id, backend) or {"status": "UNKNOWN", "task": ""}
    percent = state.get("percent")
    if state["status"] == "SUCCESSFUL":
        percent = 100
    return {
        "task_id": task_id,
        "label": label or state.get("task", "").rsplit(".", 1)[-1],
        "state": state,
        "percent": percent,
        "events_url": sse.stream_url(task_id, backend=backend),
        "status_url": sse.status_url(task_id, backend=backend),
    }


@register.filter
def loom_status_class(status: str) -> str:
    """CSS modifier for a status pill: ``loom-status--failed`` etc."""
    return f"loom-status--{str(status).lower()}"
