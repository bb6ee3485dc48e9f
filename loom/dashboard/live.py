"""Live pages: each dashboard page follows the database over one server-sent event stream.

``live_view`` answers ``live/?url=<the page's path and query>`` (staff only, like the pages). It
renders the page's region (``views.<page>_region`` with ``regions/<page>.html``, the very code that
rendered the page) and sends it as a ``region`` event each time its HTML changes. The event id
is a hash of that HTML: a browser that reconnects sends it back (``Last-Event-ID``) and gets the
region again only if it changed meanwhile, which is how a lost stream catches up. The page's
script (``dashboard.js``) patches the region in place, node by node, so nothing that did not
change is touched: no flicker, ticked checkboxes stay ticked, an open traceback stays open.

When it renders again: after task events (``loom.events.ALL_TASKS``; a task page listens to its
own task), gathered for ``SETTLE`` seconds, and at least every ``POLL`` seconds. With an
in-process broker (SQLite: a worker's events never reach the web process) it rereads every
``LOCAL_POLL`` seconds (``TASK_POLL`` on a task page, for its progress bar). Under WSGI a stream
ends after ``loom.sse.WSGI_MAX_SECONDS`` and the browser reconnects; under ASGI it holds no thread
while it waits. A page whose object is gone (a deleted task) gets ``gone`` and the stream ends.

It refuses to stream anything but the dashboard's own pages: ``url`` must resolve to one of
``PAGES`` in the ``loom`` namespace.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponseBadRequest, QueryDict, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.views.decorators.http import require_GET

from loom import events, sse
from loom.dashboard import views
from loom.dashboard.access import staff_required

# Seconds between rereads when task events reach this process (they wake it sooner).
POLL = 5.0
# Seconds between rereads when they cannot (the in-process broker), and on a task page.
LOCAL_POLL = 1.0
TASK_POLL = 0.5
# Seconds events are gathered before one render (a burst of finishes is one update).
SETTLE = 0.25
# Events a page's subscription keeps: it only needs to know that something happened.
WAKE_BUFFER = 16

# url name in the ``loom`` namespace -> (region builder, region template name).
PAGES: dict[str, tuple[Callable[..., dict], str]] = {
    "overview": (views.overview_region, "overview"),
    "workers": (views.workers_region, "workers"),
    "tasks": (views.tasks_region, "tasks"),
    "task": (views.task_region, "task_detail"),
    "schedules": (views.schedules_region, "schedules"),
}
# A CSRF token is masked afresh on every render: leave it out of the comparison.
CSRF_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


class Region:
    """One page's region: renders it and says what to send (nothing when it did not change)."""

    def __init__(self, request: HttpRequest, url: str) -> None:
        parts = urlsplit(url)
        try:
            match = resolve(parts.path)
        except Resolver404:
            raise Http404(f"{parts.path!r} is not a dashboard page.") from None
        if "loom" not in match.namespaces or match.url_name not in PAGES:
            raise Http404(f"{parts.path!r} is not a live dashboard page; open one of its pages instead.")
        self.request, self.kwargs = request, match.kwargs
        self.build, self.template = PAGES[match.url_name]
        self.query = QueryDict(parts.query)
        self.name = match.url_name
        self.last = request.headers.get("Last-Event-ID", "")

    @property
    def groups(self) -> tuple[str, ...]:
        if self.name == "task":
            return (events.task_group(self.kwargs["task_id"]),)
        return (events.ALL_TASKS,)

    @property
    def poll(self) -> float:
        if events.get_broker().cross_process:
            return POLL
        return TASK_POLL if self.name == "task" else LOCAL_POLL

    def frames(self) -> list[bytes]:
        """Render now; the frames to send (none if the client already has this HTML)."""
        try:
            context = self.build(self.request, self.query, **self.kwargs)
        except Http404:
            return [sse.format_event({"type": "gone"})]
        html = render_to_string(f"loom/dashboard/regions/{self.template}.html", context, request=self.request)
        version = hashlib.blake2b(CSRF_VALUE.sub("", html).encode(), digest_size=8).hexdigest()
        if version == self.last:
            return []
        self.last = version
        data = json.dumps({"type": "region", "html": html}, separators=(",", ":"))
        return [f"id: {version}\nevent: region\ndata: {data}\n\n".encode()]


def _ended(frames: list[bytes]) -> bool:
    return any(frame.startswith(b"event: gone") for frame in frames)


class Pace:
    """When a stream renders (woken by events, or its poll is due) and when it pings."""

    def __init__(self, region: Region) -> None:
        now = time.monotonic()
        self.region, self.next_poll, self.next_ping = region, now, now + sse.HEARTBEAT

    def wait(self, end: float = float("inf")) -> float:
        return max(0.0, min(self.next_poll, self.next_ping, end) - time.monotonic())

    def render(self, woken: bool) -> bool:
        if woken or time.monotonic() >= self.next_poll:
            self.next_poll = time.monotonic() + self.region.poll
            return True
        return False

    def ping(self) -> bool:
        if time.monotonic() >= self.next_ping:
            self.next_ping = time.monotonic() + sse.HEARTBEAT
            return True
        return False


def _frames(region: Region, max_seconds: float) -> Iterator[bytes]:
    subscription = events.subscribe(*region.groups, maxsize=WAKE_BUFFER)
    pace, end = Pace(region), time.monotonic() + max_seconds
    try:
        yield f"retry: {sse.RETRY_MS}\n\n".encode()
        while time.monotonic() < end:
            woken = subscription.get(pace.wait(end)) is not None
            settle = time.monotonic() + SETTLE
            while woken and subscription.get(max(0.0, settle - time.monotonic())) is not None:
                pass  # one render for a burst of events
            frames = region.frames() if pace.render(woken) else []
            yield from frames
            if _ended(frames):
                return
            if pace.ping():
                yield b": ping\n\n"
    finally:
        subscription.close()


def _render_in_pool(region: Region) -> list[bytes]:
    """Render from a shared pool thread, closing its connections after: no thread owns them."""
    from django.db import connections

    try:
        return region.frames()
    finally:
        connections.close_all()


async def _aframes(region: Region) -> AsyncIterator[bytes]:
    subscription = events.asubscribe(*region.groups, maxsize=WAKE_BUFFER)
    pace = Pace(region)
    render = sync_to_async(_render_in_pool, thread_sensitive=False)
    try:
        yield f"retry: {sse.RETRY_MS}\n\n".encode()
        while True:
            woken = await subscription.aget(pace.wait()) is not None
            settle = time.monotonic() + SETTLE
            while woken and await subscription.aget(max(0.0, settle - time.monotonic())) is not None:
                pass
            frames = await render(region) if pace.render(woken) else []
            for frame in frames:
                yield frame
            if _ended(frames):
                return
            if pace.ping():
                yield b": ping\n\n"
    finally:
        subscription.close()


@staff_required
@require_GET
def live_view(request: HttpRequest) -> StreamingHttpResponse | HttpResponseBadRequest:
    url = request.GET.get("url", "")
    if not url.startswith("/"):
        return HttpResponseBadRequest("live/ needs ?url= with the path of a dashboard page, e.g. ?url=/loom/tasks/.")
    region = Region(request, url)
    content = _aframes(region) if isinstance(request, ASGIRequest) else _frames(region, sse.WSGI_MAX_SECONDS)
    return sse.stream_response(content)
