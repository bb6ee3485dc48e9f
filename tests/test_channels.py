"""Django Channels both ways: loom.channels.TaskConsumer and the Channels bridge (loom.events.channels).

One startproject site per module run, set up as docs/channels.md says: channels-redis on the
machine's Redis (a key prefix of its own), uvicorn serving the demo's WebSocket consumer
(``example/demo/channels_demo.py``, with this Django's task import), ``runworker loom-tasks`` for
TaskConsumer, and ``loom worker`` with its defaults. A real WebSocket client talks to it; the
test also speaks to the channel layer directly, as a view would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import DB, ROOT, wait_until
from tests.plain_project import TASK_IMPORT, PlainProject

REDIS = ("127.0.0.1", 6379)
# Seconds the three servers get to say they are up.
STARTUP_DEADLINE = 60.0
# Seconds a reply or an event may take.
DEADLINE = 20.0

ASGI = '''
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from loom.channels import TaskConsumer
from shop.consumers import TaskProgressConsumer

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AllowedHostsOriginValidator(URLRouter([path("ws/channels/", TaskProgressConsumer.as_asgi())])),
    "channel": ChannelNameRouter({"loom-tasks": TaskConsumer.as_asgi()}),
})
'''


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the Channels tests to run: {reason}")
    print(f"\nSKIPPING the Channels tests: {reason}")
    pytest.skip(reason)


class Process:
    """A server subprocess whose output a thread collects; ``wait_for`` blocks on a pattern."""

    def __init__(self, proc: subprocess.Popen, name: str) -> None:
        self.proc, self.name, self.text = proc, name, ""
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.changed:
                self.text += line
                self.changed.notify_all()

    def wait_for(self, pattern: str, deadline: float = STARTUP_DEADLINE) -> None:
        end = time.monotonic() + deadline
        with self.changed:
            while not re.search(pattern, self.text):
                remaining = end - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} did not print {pattern!r}:\n{self.text[-3000:]}")
                self.changed.wait(min(remaining, 0.5))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Site:
    def __init__(self, project: PlainProject, port: int, prefix: str) -> None:
        self.project, self.port, self.prefix = project, port, prefix
        self.db = project.dir / "db.sqlite3"

    def layer(self):
        """A channel layer like the site's, for this test process (a view's point of view)."""
        from channels_redis.core import RedisChannelLayer

        return RedisChannelLayer(hosts=[{"address": "redis://127.0.0.1:6379/0", "socket_timeout": 10}],
                                 prefix=self.prefix)

    def status(self, task_id: str) -> str | None:
        with sqlite3.connect(self.db) as db:
            row = db.execute("SELECT status FROM loom_task WHERE id = ?", [uuid.UUID(task_id).hex]).fetchone()
        return row[0] if row else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if DB != "sqlite":
        pytest.skip("the Channels site is a startproject SQLite site: the sqlite run")
    try:
        import channels  # noqa: F401
        import channels_redis  # noqa: F401
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401
    except ImportError as exc:
        unavailable(f"{exc.name} is not installed (requirements/base.txt)")
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError as exc:
        unavailable(f"Redis at {REDIS[0]}:{REDIS[1]} is unreachable ({exc})")

    project = PlainProject(tmp_path_factory.mktemp("channels"))
    prefix = f"loomtest{os.getpid()}"
    project.append_settings(f"""
        INSTALLED_APPS += ["channels"]
        ASGI_APPLICATION = "mysite.asgi.application"
        CHANNEL_LAYERS = {{"default": {{
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {{"hosts": [{{"address": "redis://127.0.0.1:6379/0", "socket_timeout": 10}}],
                        "prefix": {prefix!r}}},
        }}}}
        LOOM_EVENTS = {{"CHANNELS_BRIDGE": True}}
    """)
    demo = (ROOT / "example" / "demo" / "channels_demo.py").read_text()
    assert "from django.tasks import task" in demo
    project.write("shop/consumers.py", demo.replace("from django.tasks import task", TASK_IMPORT))
    (project.dir / project.name / "asgi.py").write_text(ASGI)
    project.manage("migrate", "-v", "0")

    port = free_port()
    servers = [
        Process(project.popen_python("-m", "uvicorn", f"{project.name}.asgi:application", "--host", "127.0.0.1",
                                     "--port", str(port)), "uvicorn"),
        Process(project.popen("runworker", "loom-tasks"), "runworker"),
        Process(project.popen("loom", "worker"), "loom worker"),
    ]
    try:
        servers[0].wait_for(r"Uvicorn running on")
        servers[1].wait_for(r"Running worker for channels")
        servers[2].wait_for(r"loom worker .*: queues")
        yield Site(project, port, prefix)
    finally:
        for server in servers:
            server.stop()
    assert "Traceback" not in servers[1].text, servers[1].text  # no message crashed TaskConsumer


def follow(site: Site, start: int) -> list[dict]:
    """Send {"start": n} over a real WebSocket and collect what comes back until the task ends."""
    from websockets.sync.client import connect

    received = []
    with connect(f"ws://127.0.0.1:{site.port}/ws/channels/", origin=f"http://127.0.0.1:{site.port}") as ws:
        ws.send(json.dumps({"start": start}))
        while not received or received[-1].get("type") not in ("finished", "failed", "error"):
            received.append(json.loads(ws.recv(timeout=DEADLINE)))
    return received


def test_task_events_reach_a_websocket_consumer_through_the_bridge(site):
    received = follow(site, 6)
    accepted = received[0]
    assert accepted["type"] == "accepted", received  # TaskConsumer stored it and replied
    task_id = accepted["task_id"]
    events = received[1:]
    assert {e["task_id"] for e in events} == {task_id}
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["current"] == 6 and progress[-1]["total"] == 6, events
    assert [p["current"] for p in progress] == sorted(p["current"] for p in progress)
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "SUCCESSFUL", events
    wait_until(lambda: site.status(task_id) == "SUCCESSFUL", message="the row SUCCESSFUL")


def test_a_bad_websocket_request_gets_an_error_not_a_task(site):
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{site.port}/ws/channels/", origin=f"http://127.0.0.1:{site.port}") as ws:
        ws.send(json.dumps({"start": "lots"}))
        reply = json.loads(ws.recv(timeout=DEADLINE))
    assert reply["type"] == "error" and '{"start": n}' in reply["error"]


async def _exchange(site: Site, messages: list[dict], group: str | None = None) -> list[dict]:
    """Send each message to TaskConsumer (to its channel, or to a group it belongs to) with a
    reply channel of ours, and return the replies in order."""
    layer = site.layer()
    replies = []
    try:
        reply_channel = await layer.new_channel()
        if group:
            await layer.group_add(group, "loom-tasks")
        for message in messages:
            message = {**message, "reply_channel": reply_channel}
            if group:
                await layer.group_send(group, message)
            else:
                await layer.send("loom-tasks", message)
            replies.append(await asyncio.wait_for(layer.receive(reply_channel), DEADLINE))
        if group:
            await layer.group_discard(group, "loom-tasks")
    finally:
        await layer.close_pools()
    return replies


def test_task_consumer_turns_send_and_group_send_into_durable_tasks(site):
    count_to = "shop.consumers.count_to"
    [sent] = asyncio.run(_exchange(site, [{"type": "task.enqueue", "task": count_to, "args": [1]}]))
    [grouped] = asyncio.run(_exchange(site, [{"type": "task.enqueue", "task": count_to, "kwargs": {"n": 2},
                                              "priority": 5, "queue_name": "default"}], group=f"{site.prefix}-jobs"))
    for reply in (sent, grouped):
        assert reply["type"] == "task.enqueued" and reply["task"] == count_to, reply
        task_id = reply["task_id"]
        wait_until(lambda: site.status(task_id) == "SUCCESSFUL", timeout=DEADLINE,  # noqa: B023 (used at once)
                   message=f"task {task_id} SUCCESSFUL")


def test_task_consumer_rejects_bad_messages_with_the_reason_and_keeps_going(site):
    bad = [
        ({"type": "task.enqueue"}, "'task' must be the dotted path"),
        ({"type": "task.enqueue", "task": "shop.consumers.count_to", "wait": True}, "unknown key(s) 'wait'"),
        ({"type": "task.enqueue", "task": "os.system", "args": ["true"]}, "not a task"),
        ({"type": "task.enqueue", "task": "shop.nowhere.nothing"}, "does not import"),
        ({"type": "task.enqueue", "task": "shop.consumers.count_to", "args": "5"}, "'args' must be a list"),
        ({"type": "task.enqueue", "task": "shop.consumers.count_to", "run_after": "tomorrow"}, "'run_after'"),
        ({"type": "task.enqueue", "task": "shop.consumers.count_to", "priority": 1000}, "priority"),
    ]
    replies = asyncio.run(_exchange(site, [message for message, _ in bad]))
    for (message, expected), reply in zip(bad, replies, strict=True):
        assert reply["type"] == "task.rejected" and expected in reply["error"], (message, reply)
    # A message of another type is ignored (logged); the consumer still serves the next one.
    asyncio.run(_send_only(site, {"type": "something.else"}))
    [ok] = asyncio.run(_exchange(site, [{"type": "task.enqueue", "task": "shop.consumers.count_to", "args": [1]}]))
    assert ok["type"] == "task.enqueued"


async def _send_only(site: Site, message: dict) -> None:
    layer = site.layer()
    try:
        await layer.send("loom-tasks", message)
    finally:
        await layer.close_pools()


def test_the_docs_show_the_asgi_routing_this_test_runs():
    docs = (ROOT / "docs" / "channels.md").read_text()
    for line in ('"channel": ChannelNameRouter({"loom-tasks": TaskConsumer.as_asgi()}),',
                 'LOOM_EVENTS = {"CHANNELS_BRIDGE": True}', '"socket_timeout": 10'):
        assert line in docs and (line in ASGI or line in Path(__file__).read_text())
