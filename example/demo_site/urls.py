"""Demo URLs: the demo page, the loom dashboard at /loom/, the admin, and /parallel/ when present."""

from django.contrib import admin
from django.http import Http404
from django.urls import include, path

from demo import views


def parallel(request):
    # Imported per request: the parallel demo is optional, and the site works without it.
    try:
        from demo.parallel import parallel_page
    except ImportError:
        raise Http404("The parallel demo (demo/parallel.py) is not part of this checkout.") from None
    return parallel_page(request)


urlpatterns = [
    path("", views.index, name="index"),
    path("start/<str:kind>/", views.start, name="start"),
    path("result/<uuid:task_id>/", views.result, name="result"),
    path("parallel/", parallel, name="parallel"),
    path("channels/", include("demo.channels_urls")),  # the Channels demo's page (docs/channels.md)
    path("loom/", include("loom.urls")),
    path("admin/", admin.site.urls),
]
