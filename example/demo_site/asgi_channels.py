"""ASGI entry point of the Channels demo: HTTP, the demo's WebSocket, and loom's TaskConsumer.

``uvicorn demo_site.asgi_channels:application`` serves HTTP and ``/ws/channels/``;
``manage.py runworker loom-tasks`` runs the ``channel`` part (settings: ``demo_site.settings_channels``).
"""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings_channels")
django_asgi_app = get_asgi_application()  # set Django up before importing consumers

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from demo.channels_demo import TASKS_CHANNEL, TaskProgressConsumer  # noqa: E402
from loom.channels import TaskConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": ASGIStaticFilesHandler(django_asgi_app),  # the demo's CSS, as runserver serves it
    "websocket": AllowedHostsOriginValidator(URLRouter([path("ws/channels/", TaskProgressConsumer.as_asgi())])),
    "channel": ChannelNameRouter({TASKS_CHANNEL: TaskConsumer.as_asgi()}),
})
