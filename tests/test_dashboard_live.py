"""The dashboard's live regions (``loom.dashboard.live``): what the stream sends, when it sends
nothing, how a reconnect catches up, and what it refuses."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client, RequestFactory
from django.urls import include, path, reverse

from loom.dashboard import live
from loom.models import TaskRecord
from loom.testing import run_tasks
from tests.app import tasks

urlpatterns = [path("loom/", include("loom.urls")),
               path("admin/", __import__("django.contrib.admin").contrib.admin.site.urls)]
pytestmark = [pytest.mark.usefixtures("memory_events"), pytest.mark.urls(__name__), pytest.mark.django_db]


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_superuser("boss", "boss@example.com", None)


def region(user, url: str, last: str = "") -> live.Region:
    request = RequestFactory().get("/loom/live/", {"url": url}, headers={"Last-Event-ID": last} if last else {})
    request.user = user
    return live.Region(request, url)


def parse(frame: bytes) -> tuple[str, str, dict]:
    fields = dict(line.split(": ", 1) for line in frame.decode().strip().splitlines())
    return fields.get("id", ""), fields["event"], json.loads(fields["data"])


def ready_shown(frame: bytes | str) -> int:
    """The overview's Ready count in a region frame."""
    html = parse(frame.encode() if isinstance(frame, str) else frame)[2]["html"]
    return int(re.search(r'ld-stat__value">(\d+)</span><span class="ld-stat__label">Ready<', html)[1])


def test_a_region_is_sent_once_and_again_only_when_it_changed(boss):
    first = region(boss, "/loom/tasks/")
    version, kind, data = parse(first.frames()[0])
    assert kind == "region" and "No tasks match" in data["html"] and "<main" not in data["html"]  # the region only
    assert first.frames() == []  # nothing changed: nothing to send
    added = tasks.add.enqueue(1, 1)
    version2, _, data = parse(first.frames()[0])
    assert version2 != version and added.id in data["html"]
    # A browser that reconnects sends the id of what it has: it gets the region only if it changed.
    assert region(boss, "/loom/tasks/", last=version2).frames() == []
    assert added.id in parse(region(boss, "/loom/tasks/", last=version).frames()[0])[2]["html"]


def test_a_fresh_csrf_token_alone_is_not_a_change(boss):
    failed = tasks.fail.enqueue()
    run_tasks()
    page = region(boss, f"/loom/tasks/{failed.id}/")
    html = parse(page.frames()[0])[2]["html"]
    assert "csrfmiddlewaretoken" in html and page.frames() == []


def test_each_page_has_a_region(boss):
    failed = tasks.fail.enqueue()
    run_tasks()
    for url, words in [("/loom/", "Throughput"), ("/loom/workers/", "No worker has registered"),
                       (f"/loom/tasks/{failed.id}/", "ValueError: boom"),
                       ("/loom/schedules/", "No periodic schedules")]:
        assert words in parse(region(boss, url).frames()[0])[2]["html"], url


def test_a_deleted_task_is_gone(boss):
    done = tasks.add.enqueue(1, 2)
    page = region(boss, f"/loom/tasks/{done.id}/")
    page.frames()
    TaskRecord.objects.filter(pk=done.id).delete()
    assert parse(page.frames()[0])[1] == "gone"


def test_the_stream_sends_the_region_then_follows_the_table(boss, monkeypatch):
    monkeypatch.setattr(live, "LOCAL_POLL", 0.05)
    client = Client()
    client.force_login(boss)
    response = client.get(reverse("loom:live"), {"url": "/loom/"})
    assert response["Content-Type"] == "text/event-stream"
    frames = iter(response.streaming_content)
    try:
        assert next(frames).startswith(b"retry: ")
        assert ready_shown(next(frames)) == 0
        tasks.add.enqueue(1, 1)
        assert ready_shown(next(f for f in frames if f.startswith(b"id: "))) == 1
    finally:
        response.close()  # what a browser leaving the page does: the subscription goes


def test_it_streams_dashboard_pages_only(boss, django_user_model):
    client = Client()
    client.force_login(boss)
    assert client.get(reverse("loom:live")).status_code == 400
    assert b"needs ?url=" in client.get(reverse("loom:live"), {"url": "https://evil.example/"}).content
    assert client.get(reverse("loom:live"), {"url": "/admin/"}).status_code == 404
    assert client.get(reverse("loom:live"), {"url": "/loom/metrics"}).status_code == 404
    member = Client()
    member.force_login(django_user_model.objects.create_user("member"))
    assert member.get(reverse("loom:live"), {"url": "/loom/"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_under_asgi_an_event_wakes_the_stream(boss, monkeypatch):
    """No poll (an hour): the enqueued event alone makes the overview render again."""
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    monkeypatch.setattr(live, "LOCAL_POLL", 3600.0)
    client = Client()
    client.force_login(boss)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    def enqueue() -> None:
        from django.db import connections

        try:
            tasks.add.enqueue(2, 3)
        finally:
            connections.close_all()  # a pool thread's connection would outlive the test database

    async def scenario() -> list[str]:
        inbox, chunks, changed = asyncio.Queue(), [], asyncio.Event()
        await inbox.put({"type": "http.request", "body": b"", "more_body": False})
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/loom/live/", "raw_path": b"/loom/live/", "query_string": b"url=/loom/", "root_path": "",
                 "headers": [(b"host", b"testserver"), (b"cookie", cookie)], "client": ("127.0.0.1", 5000),
                 "server": ("testserver", 80)}

        async def send(message: dict) -> None:
            chunks.append(message.get("body", b""))
            changed.set()

        async def regions(n: int) -> list[str]:
            while len(found := [c.decode() for c in chunks if c.startswith(b"id: ")]) < n:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 15)
            return found

        handler = asyncio.create_task(ASGIHandler()(scope, inbox.get, send))
        await regions(1)
        await asyncio.get_running_loop().run_in_executor(None, enqueue)
        found = await regions(2)
        await inbox.put({"type": "http.disconnect"})
        await asyncio.wait_for(handler, 15)
        return found

    first, second = asyncio.run(scenario())[:2]
    assert (ready_shown(first), ready_shown(second)) == (0, 1)
