"""URLs of the dashboard, the event streams and the metrics endpoint.

Include them under any prefix: ``path("loom/", include("loom.urls"))``. The namespace is
``loom`` (``reverse("loom:tasks")``). The dashboard pages and ``live/`` (their updates) are staff
only; ``events/`` and ``status/`` are guarded by signed tokens (``loom.sse``); ``metrics`` by
staff login or a bearer token (``loom.metrics``).
"""

from django.urls import path

from loom import metrics, sse
from loom.dashboard import actions, live, views

app_name = "loom"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("workers/", views.workers, name="workers"),
    path("queues/<str:queue>/<str:action>/", actions.queue_action, name="queue-action"),
    path("tasks/", views.tasks, name="tasks"),
    path("tasks/bulk/", actions.bulk_action, name="bulk-action"),
    path("tasks/<uuid:task_id>/", views.task_detail, name="task"),
    path("tasks/<uuid:task_id>/<str:action>/", actions.task_action, name="task-action"),
    path("schedules/", views.schedules, name="schedules"),
    path("live/", live.live_view, name="live"),
    path("events/<str:token>/", sse.events_view, name="events"),
    path("status/<str:token>/", sse.status_view, name="status"),
    path("metrics", metrics.metrics_view, name="metrics"),
]
