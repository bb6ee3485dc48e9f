"""Who may use the dashboard: active staff see it; actions need the model's permissions.

Anonymous users are redirected to the admin login page (or ``LOGIN_URL`` without the admin);
signed-in users who are not staff get 403. This is checked on every view, including the JSON and
action endpoints; nothing is public except the token-guarded event streams of ``loom.sse``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import NoReverseMatch, reverse

# Permission each action needs (superusers have them all).
ACTION_PERMISSIONS = {
    "retry": "loom.change_taskrecord",
    "cancel": "loom.change_taskrecord",
    "delete": "loom.delete_taskrecord",
}

# Permission to pause and resume queues (they stop or start every worker's claims).
QUEUE_PERMISSION = "loom.change_taskrecord"


def login_url() -> str:
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return str(settings.LOGIN_URL)


def is_staff(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def staff_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is None:
            raise ImproperlyConfigured(
                "The loom dashboard needs request.user: add "
                "'django.contrib.auth.middleware.AuthenticationMiddleware' to MIDDLEWARE."
            )
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url())
        if not is_staff(user):
            raise PermissionDenied("The loom dashboard is for staff users.")
        return view(request, *args, **kwargs)

    return wrapped


def allowed_actions(user) -> set[str]:
    return {action for action, perm in ACTION_PERMISSIONS.items() if user.has_perm(perm)}


def require_action(user, action: str) -> None:
    if action not in ACTION_PERMISSIONS:
        raise PermissionDenied(f"Unknown action {action!r}.")
    if not user.has_perm(ACTION_PERMISSIONS[action]):
        raise PermissionDenied(f"You need the {ACTION_PERMISSIONS[action]} permission to {action} tasks.")
