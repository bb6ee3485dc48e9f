"""Server-sent events: stream a task's or a group's events to a browser.

Two views, both reached through a signed token, so a page can hand a browser a stream of exactly
one task or group and nothing else (``stream_url(...)`` mints one; ``{% loom_progress %}`` does it
for you). Holding a valid token is the permission; tokens expire after ``TOKEN_MAX_AGE``.

- ``events_view`` streams ``text/event-stream``. A task stream opens with a ``snapshot`` of the
  row, then relays the task's events in order (stale or repeated ones are dropped) and ends after
  the final one (``finished``, ``failed``, ``cancelled``). It also rereads the row: every
  ``LOCAL_POLL`` seconds when the event broker cannot see other processes (SQLite's in-process
  broker: the worker's events never arrive), every ``SAFETY_POLL`` seconds otherwise.
- ``status_view`` answers the same state as JSON, for clients that poll instead.

Snapshots carry the task's ``label`` in the words every view uses (``loom.phase``: "Waiting to
retry", "Stopping", ...) and only the progress of its current attempt.

Under ASGI the stream is an async generator waiting on an ``asyncio.Event``: no thread is held per
client, and a client that disconnects cancels the generator, whose ``finally`` drops the
subscription. Under WSGI each open stream holds a server thread, so it ends after
``WSGI_MAX_SECONDS`` and the browser's EventSource reconnects (``retry:``); run an ASGI server
(uvicorn, daphne) for many clients, or let ``loom.js`` poll ``status_view``.

Use ``task_stream(request, task_id)`` or ``group_stream(request, *groups)`` from your own views to
stream with your own permission checks.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signing
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from loom import events
from loom.compat import TaskResult

# Seconds between keep-alive comments (keep proxies from closing, surface dead WSGI clients).
HEARTBEAT = 15.0
# Seconds a stream stays open under WSGI before the browser reconnects, freeing the thread.
WSGI_MAX_SECONDS = 55.0
# Seconds between rereads of the task row when the event broker is in-process only.
LOCAL_POLL = 0.5
# Seconds between rereads of the task row otherwise (catches events missed while reconnecting).
SAFETY_POLL = 5.0
# Milliseconds the browser waits before reconnecting.
RETRY_MS = 1000
# Seconds a stream token stays valid.
TOKEN_MAX_AGE = 7 * 24 * 3600

SALT = "loom.sse"
FINAL = {"SUCCESSFUL": "finished", "FAILED": "failed", "CANCELLED": "cancelled"}


# -- tokens and URLs ---------------------------------------------------------------------------

def make_token(*, task_id: str | None = None, group: str | None = None, backend: str = "default") -> str:
    """A signed token naming one task or one group (exactly one of the two)."""
    if (task_id is None) == (group is None):
        raise TypeError("make_token() needs exactly one of task_id= or group=.")
    if group is not None:
        events._check_group(group)
        return signing.dumps({"g": group}, salt=SALT)
    return signing.dumps({"t": str(task_id), "b": backend}, salt=SALT)


def read_token(token: str) -> dict[str, str]:
    try:
        return signing.loads(token, salt=SALT, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:
        raise Http404("Unknown or expired event stream.") from None


def _token_for(target: TaskResult | str, backend: str) -> str:
    if isinstance(target, TaskResult):
        return make_token(task_id=target.id, backend=target.backend)
    return make_token(task_id=str(target), backend=backend)


def stream_url(target: TaskResult | str, *, backend: str = "default") -> str:
    """URL of the event stream of a task (a TaskResult or an id)."""
    return reverse("loom:events", kwargs={"token": _token_for(target, backend)})


def group_stream_url(group: str) -> str:
    """URL of the event stream of a group, for a page whose viewer may see that group."""
    return reverse("loom:events", kwargs={"token": make_token(group=group)})


def status_url(target: TaskResult | str, *, backend: str = "default") -> str:
    """URL of a task's state as JSON (the polling fallback)."""
    return reverse("loom:status", kwargs={"token": _token_for(target, backend)})


# -- the task row as an event ------------------------------------------------------------------

# Columns a snapshot reads: enough for the phase's label and the current attempt's progress.
SNAPSHOT_FIELDS = ("id", "task_path", "queue_name", "status", "attempts", "max_attempts", "available_at",
                   "cancel_requested", "claimed_by", "last_attempted_at", "progress_current", "progress_total",
                   "progress_message", "progress_at")


def snapshot(task_id: str, backend: str = "default") -> dict[str, Any] | None:
    """The task's row as a ``snapshot`` event payload; None if there is no such task."""
    from django.core.exceptions import ValidationError

    from loom.compat import task_backends
    from loom.models import TaskRecord

    try:
        record = (TaskRecord.objects.using(task_backends[backend].store.alias)
                  .filter(pk=task_id, backend=backend).only(*SNAPSHOT_FIELDS).first())
    except (ValidationError, ValueError, KeyError):
        return None
    return None if record is None else record_snapshot(record)


def record_snapshot(record) -> dict[str, Any]:
    """A ``snapshot`` payload from a loaded row: its status, the phase's ``label`` (the words every
    view uses, ``loom.phase``) and the progress of its current attempt only (``loom.attempts``)."""
    from loom.attempts import current_progress
    from loom.phase import phase_of

    payload = {"type": "snapshot", "task_id": str(record.id), "task": record.task_path,
               "queue": record.queue_name, "status": record.status, "label": phase_of(record).label}
    progress = current_progress(record)
    if progress is not None:
        payload.update(progress.as_dict())
    return payload


def format_event(payload: dict[str, Any], event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {payload.get('type', 'message')}")
    lines.append("data: " + json.dumps(payload, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def _state(payload: dict[str, Any]) -> tuple:
    """What a client shows of a payload: a reread that changes none of it sends nothing."""
    return tuple(payload.get(k) for k in ("status", "label", "current", "total", "message"))


class TaskStream:
    """Turns a task's snapshots and events into SSE frames, in order, ending after the final one."""

    def __init__(self) -> None:
        self.sent = 0
        self.done = False
        self._state: tuple | None = None
        self._progress_at = ""

    def _labelled(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Events from workers carry no ``label``: keep the last one while the status holds."""
        if "label" in payload:
            return payload
        status = str(payload.get("status") or "")
        state = self._state
        label = state[1] if state is not None and state[0] == status else status.capitalize()
        return dict(payload, label=label)

    def _frame(self, payload: dict[str, Any]) -> list[bytes]:
        self.sent += 1
        self._state = _state(payload)
        if payload.get("status") in FINAL:
            self.done = True
        return [format_event(payload, self.sent)]

    def first(self, payload: dict[str, Any]) -> list[bytes]:
        self._progress_at = payload.get("at") or ""
        return [f"retry: {RETRY_MS}\n\n".encode(), *self._frame(self._labelled(payload))]

    def event(self, payload: dict[str, Any]) -> list[bytes]:
        if self.done:
            return []
        payload = self._labelled(payload)
        if payload.get("type") == "progress":
            at = payload.get("at") or ""
            state = _state(payload)
            if at and (at < self._progress_at or (at == self._progress_at and state == self._state)):
                return []  # older than, or the same as, what the client already has (a reread got ahead)
            self._progress_at = at
        return self._frame(payload)

    def reread(self, payload: dict[str, Any] | None) -> list[bytes]:
        if self.done or payload is None:
            return []
        state = _state(self._labelled(payload))
        # A reread older than a progress event already sent; one without progress (a READY row
        # between attempts) is never stale.
        stale = payload["status"] not in FINAL and bool(payload.get("at")) and payload["at"] < self._progress_at
        if state == self._state or stale:
            return []
        payload = dict(payload, type=FINAL.get(payload["status"], "progress" if "current" in payload else "snapshot"))
        return self.event(payload)


def _poll_interval() -> float:
    return SAFETY_POLL if events.get_broker().cross_process else LOCAL_POLL


# -- streams -----------------------------------------------------------------------------------

async def _atask_frames(task_id: str, backend: str) -> AsyncIterator[bytes]:
    subscription = events.asubscribe(events.task_group(task_id))
    read = sync_to_async(snapshot, thread_sensitive=False)  # a shared pool, not a thread per client
    try:
        stream = TaskStream()
        first = await read(task_id, backend)
        if first is None:
            return
        for frame in stream.first(first):
            yield frame
        poll, now = _poll_interval(), time.monotonic()
        next_poll, next_ping = now + poll, now + HEARTBEAT
        while not stream.done:
            event = await subscription.aget(max(0.0, min(next_poll, next_ping) - time.monotonic()))
            frames = stream.event(event.payload) if event is not None else []
            now = time.monotonic()
            if now >= next_poll:
                frames += stream.reread(await read(task_id, backend))
                next_poll = now + poll
            if now >= next_ping:
                frames.append(b": ping\n\n")
                next_ping = now + HEARTBEAT
            for frame in frames:
                yield frame
    finally:
        subscription.close()


def _task_frames(task_id: str, backend: str, max_seconds: float) -> Iterator[bytes]:
    subscription = events.subscribe(events.task_group(task_id))
    try:
        stream = TaskStream()
        first = snapshot(task_id, backend)
        if first is None:
            return
        yield from stream.first(first)
        poll, now = _poll_interval(), time.monotonic()
        next_poll, next_ping, end = now + poll, now + HEARTBEAT, now + max_seconds
        while not stream.done and time.monotonic() < end:
            event = subscription.get(max(0.0, min(next_poll, next_ping, end) - time.monotonic()))
            frames = stream.event(event.payload) if event is not None else []
            now = time.monotonic()
            if now >= next_poll:
                frames += stream.reread(snapshot(task_id, backend))
                next_poll = now + poll
            if now >= next_ping:
                frames.append(b": ping\n\n")
                next_ping = now + HEARTBEAT
            yield from frames
    finally:
        subscription.close()


async def _agroup_frames(groups: tuple[str, ...]) -> AsyncIterator[bytes]:
    subscription = events.asubscribe(*groups)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        sent = 0
        while True:
            event = await subscription.aget(HEARTBEAT)
            if event is None:
                yield b": ping\n\n"
                continue
            sent += 1
            yield format_event(dict(event.payload, group=event.group), sent)
    finally:
        subscription.close()


def _group_frames(groups: tuple[str, ...], max_seconds: float) -> Iterator[bytes]:
    subscription = events.subscribe(*groups)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        sent, end = 0, time.monotonic() + max_seconds
        while time.monotonic() < end:
            event = subscription.get(min(HEARTBEAT, max(0.0, end - time.monotonic())))
            if event is None:
                yield b": ping\n\n"
                continue
            sent += 1
            yield format_event(dict(event.payload, group=event.group), sent)
    finally:
        subscription.close()


def stream_response(content) -> StreamingHttpResponse:
    """A text/event-stream response that proxies pass on at once and never cache."""
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass frames on at once
    return response


def task_stream(request: HttpRequest, task_id: str, backend: str = "default") -> StreamingHttpResponse:
    """Stream one task's events (check the viewer's permission before calling this)."""
    if snapshot(task_id, backend) is None:
        raise Http404("No such task.")
    if isinstance(request, ASGIRequest):
        return stream_response(_atask_frames(task_id, backend))
    return stream_response(_task_frames(task_id, backend, WSGI_MAX_SECONDS))


def group_stream(request: HttpRequest, *groups: str) -> StreamingHttpResponse:
    """Stream the events sent to ``groups`` (check the viewer's permission before calling this)."""
    groups = tuple(events._check_group(g) for g in groups)
    if not groups:
        raise TypeError("group_stream() needs at least one group.")
    if isinstance(request, ASGIRequest):
        return stream_response(_agroup_frames(groups))
    return stream_response(_group_frames(groups, WSGI_MAX_SECONDS))


@require_GET
def events_view(request: HttpRequest, token: str) -> StreamingHttpResponse:
    target = read_token(token)
    if "g" in target:
        return group_stream(request, target["g"])
    return task_stream(request, target["t"], target.get("b", "default"))


@require_GET
def status_view(request: HttpRequest, token: str) -> JsonResponse:
    target = read_token(token)
    if "t" not in target:
        raise Http404("A group has no status; open its event stream instead.")
    payload = snapshot(target["t"], target.get("b", "default"))
    if payload is None:
        raise Http404("No such task.")
    payload["final"] = payload["status"] in FINAL
    response = JsonResponse(payload)
    response["Cache-Control"] = "no-store"
    return response
