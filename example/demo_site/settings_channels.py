"""The demo with Django Channels (docs/channels.md): a Redis channel layer, loom's Channels bridge.

Use with ``demo_site.asgi_channels`` (``scripts/demo_channels.sh`` starts everything).
``LOOM_DEMO_REDIS`` moves the Redis URL (default ``redis://127.0.0.1:6379/0``).
"""

import os

from demo_site.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "channels"]  # noqa: F405 (runworker)
ASGI_APPLICATION = "demo_site.asgi_channels.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s timeout by default, and channels-redis blocks for 5 s waiting
        # for messages: without a longer socket_timeout every idle consumer fails after 5 s.
        "CONFIG": {"hosts": [{"address": os.environ.get("LOOM_DEMO_REDIS", "redis://127.0.0.1:6379/0"),
                              "socket_timeout": 10}]},
    }
}
# Every loom event (task events from the worker included) also goes to the channel layer.
LOOM_EVENTS = {"CHANNELS_BRIDGE": True}
