"""Events: publish/subscribe for task lifecycle events and for your own group broadcasts.

What it owns:

- ``send(group, payload)``: broadcast a JSON payload to everyone subscribed to ``group`` (what
  Channels' ``group_send`` does, without Channels). Safe to call from views, tasks and coroutines:
  it never waits on the network.
- ``subscribe(*groups)`` / ``asubscribe(*groups)``: a ``Subscription`` for a thread or a coroutine.
- Task events, published for you: ``enqueued``, ``started``, ``progress``, ``finished``,
  ``failed``, ``cancelled``, each to ``task_group(id)``, ``queue_group(queue)`` and ``ALL_TASKS``
  (see ``loom.events.tasks``).

What it refuses: it is not a durable queue. Events are best effort (a subscriber that connects
late, or falls far behind, misses some); the task row stays the truth, and ``loom.sse`` reads it
on every (re)connect. Publishing is not transactional: inside ``atomic()`` use
``transaction.on_commit(lambda: events.send(...))`` when the event must follow the commit.

Configure (all keys optional)::

    LOOM_EVENTS = {
        "BACKEND": "auto",        # auto | memory | postgresql | redis | none
        "DATABASE": "default",    # postgresql: alias to NOTIFY/LISTEN on (auto: the task
                                  # backend's LISTEN_DATABASE, else its DATABASE)
        "URL": "redis://127.0.0.1:6379/0",   # redis
        "CHANNEL": "loom_events", # NOTIFY channel / Redis channel name
        "TASK_EVENTS": True,      # publish task lifecycle and progress events
        "CHANNELS_BRIDGE": False, # also group_send every event to the Channels layer (docs/channels.md)
    }

``auto`` uses PostgreSQL NOTIFY when the task database is PostgreSQL and in-process delivery
otherwise (SQLite, tests). Group names follow Channels' rule: ASCII letters, digits, ``-_.``,
under 100 characters.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, fields
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured

from loom.events.hub import DEFAULT_MAXSIZE, Event, Hub, Subscription

__all__ = [
    "ALL_TASKS", "Event", "Subscription", "asubscribe", "get_broker", "publish", "queue_group",
    "reset", "send", "subscribe", "task_group",
]

SETTING = "LOOM_EVENTS"
# Every task event also goes to this group.
ALL_TASKS = "loom.tasks"
# Channels' group-name rule, so the Channels bridge accepts every group loom accepts.
GROUP_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,99}$")

hub = Hub()


class Broker(Protocol):
    """What every broker offers (memory, postgresql, redis, none)."""

    # Events reach other processes (workers, other web servers).
    cross_process: bool
    name: str

    def publish(self, groups: tuple[str, ...], payload: dict[str, Any]) -> None: ...

    def listen(self, wait: float | None = None) -> bool: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def close(self) -> None: ...


_broker: Broker | None = None
_config: "Config | None" = None
_lock = threading.Lock()


def task_group(task_id: Any) -> str:
    return f"loom.task.{task_id}"


def queue_group(queue_name: str) -> str:
    return f"loom.queue.{queue_name}"


@dataclass(frozen=True, slots=True)
class Config:
    # auto | memory | postgresql | redis | none
    backend: str = "auto"
    # Database alias for the postgresql broker; None: the default task backend's database.
    database: str | None = None
    # Redis URL for the redis broker.
    url: str = "redis://127.0.0.1:6379/0"
    # Channel name used by the network brokers.
    channel: str = "loom_events"
    # Publish task lifecycle and progress events.
    task_events: bool = True
    # Forward every send() to the Channels layer too.
    channels_bridge: bool = False

    @classmethod
    def from_settings(cls) -> "Config":
        from django.conf import settings

        raw = getattr(settings, SETTING, None) or {}
        if not isinstance(raw, dict):
            raise ImproperlyConfigured(f"{SETTING} must be a dict, got {type(raw).__name__}.")
        known = {f.name.upper(): f.name for f in fields(cls)}
        unknown = set(raw) - set(known)
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown {SETTING} key(s) {', '.join(sorted(map(str, unknown)))}; expected "
                f"{', '.join(sorted(known))}."
            )
        config = cls(**{known[k]: v for k, v in raw.items()})
        if config.backend not in ("auto", "memory", "postgresql", "redis", "none"):
            raise ImproperlyConfigured(
                f"{SETTING}['BACKEND'] is {config.backend!r}; use auto, memory, postgresql, redis or none."
            )
        if not re.fullmatch(r"[A-Za-z0-9_]{1,63}", config.channel):
            raise ImproperlyConfigured(
                f"{SETTING}['CHANNEL'] is {config.channel!r}; use letters, digits and _ (at most 63)."
            )
        return config


def config() -> Config:
    global _config
    if _config is None:
        _config = Config.from_settings()
    return _config


class _NoBroker:
    cross_process = False
    name = "none"

    def publish(self, groups: tuple[str, ...], payload: dict[str, Any]) -> None:
        pass

    def listen(self, wait: float | None = None) -> bool:
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


def _database_alias(conf: Config) -> str:
    if conf.database:
        return conf.database
    from django.conf import settings

    options = (getattr(settings, "TASKS", {}).get("default") or {}).get("OPTIONS") or {}
    # Subscribers LISTEN: behind a transaction pooler that needs the direct alias (loom.pooler).
    return str(options.get("LISTEN_DATABASE") or options.get("DATABASE", "default"))


def _build(conf: Config) -> Broker:
    backend = conf.backend
    if backend == "auto":
        from django.db import connections

        alias = _database_alias(conf)
        vendor = connections[alias].vendor if alias in connections.settings else ""
        backend = "postgresql" if vendor == "postgresql" else "memory"
    if backend == "memory":
        from loom.events.memory import MemoryBroker

        return MemoryBroker(hub)
    if backend == "postgresql":
        from loom.events.postgres import PostgresBroker

        return PostgresBroker(hub, _database_alias(conf), conf.channel)
    if backend == "redis":
        from loom.events.redis import RedisBroker

        return RedisBroker(hub, conf.url, conf.channel)
    return _NoBroker()


def get_broker() -> Broker:
    """The broker of this process, built from ``LOOM_EVENTS`` on first use."""
    global _broker
    if _broker is None:
        with _lock:
            if _broker is None:
                _broker = _build(config())
    return _broker


def reset() -> None:
    """Close the broker and forget the configuration (tests; ``LOOM_EVENTS`` changed)."""
    global _broker, _config
    with _lock:
        broker, _broker, _config = _broker, None, None
    if broker is not None:
        broker.close()
    from loom.events import channels

    channels.reset()


def _check_group(group: str) -> str:
    if not isinstance(group, str) or not GROUP_NAME.fullmatch(group):
        raise ValueError(
            f"Event group {group!r} is not a valid name: use 1-99 ASCII letters, digits, '-', '_' "
            "or '.' (e.g. 'orders.42')."
        )
    return group


def publish(groups: tuple[str, ...] | list[str], payload: dict[str, Any]) -> None:
    """Send one event to several groups at once; subscribers of more than one get it once."""
    if not isinstance(payload, dict):
        raise TypeError(f"An event payload must be a dict, got {type(payload).__name__}.")
    checked = tuple(_check_group(g) for g in groups)
    get_broker().publish(checked, payload)
    if config().channels_bridge:
        from loom.events.channels import get_bridge

        get_bridge().forward(checked, payload)


def send(group: str, payload: dict[str, Any]) -> None:
    """Broadcast ``payload`` to the subscribers of ``group`` in every process the broker reaches."""
    publish((group,), payload)


def subscribe(*groups: str, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
    """A subscription read with ``get(timeout)`` from a thread."""
    subscription = hub.add(Subscription(hub, [_check_group(g) for g in groups], maxsize))
    get_broker().listen()
    return subscription


def asubscribe(*groups: str, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
    """A subscription read with ``await aget(timeout)``; call it on the loop that will read it."""
    loop = asyncio.get_running_loop()
    subscription = hub.add(Subscription(hub, [_check_group(g) for g in groups], maxsize, loop=loop))
    get_broker().listen()
    return subscription


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        reset()


def _connect() -> None:
    from django.core.signals import setting_changed

    setting_changed.connect(_on_setting_changed, dispatch_uid="loom.events.setting_changed")
    from loom.events import tasks  # noqa: F401  (connects the task lifecycle receivers)


_connect()
