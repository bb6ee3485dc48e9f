"""URLs for ``tests.plain_settings``: the dashboard and the admin, as the docs tell users to add them."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("loom/", include("loom.urls")), path("admin/", admin.site.urls)]
