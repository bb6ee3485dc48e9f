"""The page of the Channels demo (``/channels/``); the WebSocket behind it needs the ASGI setup of
``demo_site/asgi_channels.py`` (docs/channels.md), so this module imports nothing of Channels."""

from django.shortcuts import render
from django.urls import path


def channels_page(request):
    return render(request, "demo/channels.html")


urlpatterns = [path("", channels_page, name="channels")]
