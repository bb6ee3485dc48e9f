"""RedisBroker: events travel over Redis pub/sub on one channel (``loom_events``).

Use it when several web servers must see each other's events and the task database is not
PostgreSQL, or to keep event traffic off the database. Publishing queues the event for the
outbox thread, which sends a batch as one pipeline; a subscribing process runs one listener
thread. Needs the ``redis`` package.

Configure with ``LOOM_EVENTS = {"BACKEND": "redis", "URL": "redis://127.0.0.1:6379/0"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loom.events.hub import Hub
from loom.events.listener import Listener
from loom.events.outbox import NetworkBroker, Outbox
from loom.events.wire import encode

if TYPE_CHECKING:
    import redis
    from redis.client import PubSub


def _client(url: str) -> redis.Redis:
    try:
        import redis
    except ImportError:
        raise ImportError(
            "LOOM_EVENTS['BACKEND'] is 'redis' but the redis package is not installed; "
            "pip install redis, or pick another BACKEND."
        ) from None
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


class _RedisListener(Listener):
    name = "redis-listener"

    def __init__(self, hub: Hub, url: str, channel: str) -> None:
        super().__init__(hub)
        self.url = url
        self.channel = channel
        self._pubsub: PubSub | None = None

    def connect(self) -> None:
        pubsub = self._pubsub = _client(self.url).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(self.channel)
        # Wait for the server to confirm, so "connected" means events are being received.
        while pubsub.get_message(timeout=1.0) is not None or not pubsub.subscribed:
            pass

    def receive(self, timeout: float) -> list[str]:
        assert self._pubsub is not None, "connect() first"
        found = []
        message = self._pubsub.get_message(timeout=timeout)
        while message is not None:
            if message.get("type") == "message":
                data = message["data"]
                found.append(data.decode() if isinstance(data, bytes) else data)
            message = self._pubsub.get_message(timeout=0)
        return found

    def disconnect(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            pubsub.close()


class RedisBroker(NetworkBroker):
    cross_process = True
    name = "redis"

    def __init__(self, hub: Hub, url: str, channel: str) -> None:
        _client(url)  # fail at configuration time if the package is missing
        self.url = url
        self.channel = channel
        self.listener = _RedisListener(hub, url, channel)
        self.outbox = Outbox(self.name, self._send, self._reset)
        self._client: redis.Redis | None = None

    def publish(self, groups: tuple[str, ...], payload: dict[str, Any]) -> None:
        self.outbox.put(encode(groups, payload))

    def _send(self, batch: list[str]) -> None:
        if self._client is None:
            self._client = _client(self.url)
        pipe = self._client.pipeline(transaction=False)
        for data in batch:
            pipe.publish(self.channel, data)
        pipe.execute()

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
