"""loom.sse: event streams of a task or a group, under ASGI (no thread per client) and WSGI."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.urls import include, path

from loom import events, progress, sse
from loom.testing import run_tasks
from tests.app import progress_tasks as pt

urlpatterns = [path("loom/", include("loom.urls"))]
pytestmark = pytest.mark.urls(__name__)

# Longest any test waits for a stream to produce what it expects.
DEADLINE = 15.0


@pytest.fixture(autouse=True)
def memory_events(settings, monkeypatch):
    settings.LOOM_EVENTS = {"BACKEND": "memory"}
    monkeypatch.setattr(progress, "DEFAULT_INTERVAL", 0.0)  # every report becomes an event
    yield
    events.reset()


def parse(chunks: list[bytes]) -> list[dict]:
    """SSE frames as dicts: {"id", "event", "data"} (comments and retry lines skipped)."""
    found = []
    for frame in b"".join(chunks).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            found.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return found


class AsgiClient:
    """One GET through Django's real ASGI handler, with a way to disconnect like a browser does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.chunks: list[bytes] = []
        self.status: int | None = None
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.changed = asyncio.Event()

    async def start(self) -> None:
        await self.inbox.put({"type": "http.request", "body": b"", "more_body": False})
        path, _, query = self.url.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000),
                 "server": ("testserver", 80)}
        self.task = asyncio.create_task(ASGIHandler()(scope, self.inbox.get, self._send))

    async def _send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message.get("body"):
            self.chunks.append(message["body"])
        self.changed.set()

    async def wait_for(self, predicate, deadline: float = DEADLINE) -> list[dict]:
        end = time.monotonic() + deadline
        while not predicate(parse(self.chunks)):
            remaining = end - time.monotonic()
            assert remaining > 0, f"stream did not get there in {deadline}s; got {parse(self.chunks)}"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass
        return parse(self.chunks)

    async def disconnect(self) -> None:
        await self.inbox.put({"type": "http.disconnect"})
        await asyncio.wait_for(self.task, DEADLINE)


# -- ASGI -----------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_asgi_client_receives_a_running_tasks_events_in_order(monkeypatch):
    monkeypatch.setattr(sse, "LOCAL_POLL", 3600.0)  # events only: rereads are tested separately
    result = pt.count.enqueue(5)

    async def scenario():
        client = AsgiClient(sse.stream_url(result))
        await client.start()
        await client.wait_for(lambda found: found)  # the snapshot: subscribed before the task runs
        assert client.status == 200
        await asyncio.get_running_loop().run_in_executor(None, run_tasks)
        await asyncio.wait_for(client.task, DEADLINE)  # the stream ends after the final event
        return parse(client.chunks)

    found = asyncio.run(scenario())
    assert [f["event"] for f in found] == ["snapshot", "started"] + ["progress"] * 5 + ["finished"]
    assert found[0]["data"]["status"] == "READY"
    assert [f["data"]["current"] for f in found if f["event"] == "progress"] == [1, 2, 3, 4, 5]
    assert [f["id"] for f in found] == list(range(1, len(found) + 1))
    assert found[-1]["data"]["status"] == "SUCCESSFUL"
    assert events.hub.subscriber_count(events.task_group(result.id)) == 0


@pytest.mark.django_db(transaction=True)
def test_asgi_disconnect_drops_the_subscription():
    result = pt.count.enqueue(1)
    group = events.task_group(result.id)

    async def scenario():
        client = AsgiClient(sse.stream_url(result))
        await client.start()
        await client.wait_for(lambda found: found)
        assert events.hub.subscriber_count(group) == 1
        await client.disconnect()

    asyncio.run(scenario())
    assert events.hub.subscriber_count(group) == 0


@pytest.mark.django_db(transaction=True)
def test_asgi_group_stream_relays_sent_events():
    async def scenario():
        client = AsgiClient(sse.group_stream_url("orders.7"))
        await client.start()
        end = time.monotonic() + DEADLINE
        while events.hub.subscriber_count("orders.7") == 0:  # the generator subscribes on its first step
            assert time.monotonic() < end, "the group stream never subscribed"
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        for n in range(3):
            await loop.run_in_executor(None, events.send, "orders.7", {"type": "paid", "n": n})
        found = await client.wait_for(lambda f: len(f) == 3)
        await client.disconnect()
        return found

    found = asyncio.run(scenario())
    assert [(f["event"], f["data"]["n"], f["data"]["group"]) for f in found] == [
        ("paid", 0, "orders.7"), ("paid", 1, "orders.7"), ("paid", 2, "orders.7")]
    assert events.hub.subscriber_count("orders.7") == 0


@pytest.mark.django_db(transaction=True)
def test_asgi_sse_sustained_throughput(capsys):
    """Events per second one ASGI client receives, end to end (publish → hub → loop → frame)."""
    total, batch = 6000, 500
    received = threading.Semaphore(0)

    async def scenario():
        client = AsgiClient(sse.group_stream_url("bench.sse"))
        original = client._send

        async def counting_send(message):
            await original(message)
            if message.get("body", b"").startswith(b"id:"):
                received.release()

        client._send = counting_send
        await client.start()
        while events.hub.subscriber_count("bench.sse") == 0:
            await asyncio.sleep(0)

        def publish() -> float:
            began = time.perf_counter()
            for start in range(0, total, batch):
                for i in range(start, start + batch):
                    events.send("bench.sse", {"type": "tick", "i": i})
                for _ in range(batch):  # wait until the client has them all: no drops, real rate
                    assert received.acquire(timeout=DEADLINE), "the client stopped receiving"
            return time.perf_counter() - began

        elapsed = await asyncio.get_running_loop().run_in_executor(None, publish)
        await client.disconnect()
        return parse(client.chunks), elapsed

    found, elapsed = asyncio.run(scenario())
    assert [f["data"]["i"] for f in found] == list(range(total))  # all of them, in order
    rate = total / elapsed
    with capsys.disabled():
        print(f"\nSSE (ASGI, in-process broker): {rate:,.0f} events/s to one client")
    assert rate > 500


# -- WSGI (the sync generator) and rereads --------------------------------------------------------

@pytest.mark.django_db
def test_wsgi_stream_relays_events_and_ends_after_the_final_one(client):
    result = pt.count.enqueue(3)
    response = client.get(sse.stream_url(result))
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    content = iter(response.streaming_content)
    head = [next(content), next(content)]  # retry hint and snapshot
    run_tasks()  # in this thread: the events wait in the stream's subscription
    found = parse(head + list(content))
    assert [f["event"] for f in found] == ["snapshot", "started", "progress", "progress", "progress", "finished"]
    response.close()
    assert events.hub.subscriber_count(events.task_group(result.id)) == 0


@pytest.mark.django_db
def test_wsgi_close_by_the_server_drops_the_subscription(client):
    result = pt.count.enqueue(1)
    response = client.get(sse.stream_url(result))
    next(iter(response.streaming_content))
    assert events.hub.subscriber_count(events.task_group(result.id)) == 1
    response.close()  # what a WSGI server does when the client has gone
    assert events.hub.subscriber_count(events.task_group(result.id)) == 0


@pytest.mark.django_db
def test_stream_follows_the_row_when_events_cannot_arrive(client, settings, monkeypatch):
    """SQLite with a worker in another process: no event reaches the web process; rereads do."""
    settings.LOOM_EVENTS = {"BACKEND": "none"}
    monkeypatch.setattr(sse, "LOCAL_POLL", 0.02)
    result = pt.count.enqueue(4)
    response = client.get(sse.stream_url(result))
    content = iter(response.streaming_content)
    head = [next(content), next(content)]
    run_tasks()
    found = parse(head + list(content))
    assert found[0]["event"] == "snapshot" and found[-1]["event"] == "finished"
    assert found[-1]["data"]["status"] == "SUCCESSFUL" and found[-1]["data"]["current"] == 4


@pytest.mark.django_db
def test_stream_of_a_finished_task_is_one_snapshot(client):
    result = pt.broken.enqueue()
    run_tasks()
    found = parse(list(client.get(sse.stream_url(result)).streaming_content))
    assert [(f["event"], f["data"]["status"]) for f in found] == [("snapshot", "FAILED")]


# -- tokens and the JSON status -------------------------------------------------------------------

@pytest.mark.django_db
def test_status_view_answers_json(client):
    result = pt.count.enqueue(2)
    run_tasks()
    body = client.get(sse.status_url(result)).json()
    assert body["status"] == "SUCCESSFUL" and body["final"] is True
    assert body["current"] == 2 and body["percent"] == 100


@pytest.mark.django_db
def test_tampered_or_wrong_tokens_are_404(client):
    result = pt.count.enqueue(1)
    url = sse.stream_url(result)
    assert client.get(url.replace("/events/", "/events/x")).status_code == 404
    assert client.get("/loom/status/not-a-token/").status_code == 404
    assert client.get(sse.status_url("01920000-0000-7000-8000-000000000000")).status_code == 404
    assert client.get(sse.stream_url("01920000-0000-7000-8000-000000000000")).status_code == 404
    group_token = sse.make_token(group="orders.1")
    assert client.get(f"/loom/status/{group_token}/").status_code == 404
    assert client.post(url).status_code == 405


def test_make_token_needs_exactly_one_target():
    with pytest.raises(TypeError, match="exactly one"):
        sse.make_token()
    with pytest.raises(TypeError, match="exactly one"):
        sse.make_token(task_id="x", group="y")
    with pytest.raises(ValueError, match="not a valid name"):
        sse.make_token(group="no spaces")


def test_task_stream_drops_stale_and_repeated_updates():
    stream = sse.TaskStream()
    stream.first({"type": "snapshot", "status": "RUNNING", "current": 2, "total": 4, "message": "", "at": "2030-01-01T00:00:02"})
    assert stream.event({"type": "progress", "status": "RUNNING", "current": 1, "total": 4, "message": "", "at": "2030-01-01T00:00:01"}) == []
    assert stream.reread({"type": "snapshot", "status": "RUNNING", "current": 2, "total": 4, "message": "", "at": "2030-01-01T00:00:02"}) == []
    frames = stream.reread({"type": "snapshot", "status": "SUCCESSFUL", "current": 4, "total": 4, "message": "", "at": "2030-01-01T00:00:03"})
    assert b"event: finished" in frames[0] and stream.done
    assert stream.event({"type": "progress", "status": "RUNNING", "current": 4, "at": "2030-01-01T00:00:09"}) == []
