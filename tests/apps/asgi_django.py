"""A single-file Django project served as ASGI (tests/asgi.rs): an async view, a sync view
(Django's ASGI handler runs it through asgiref's sync_to_async), and an async view that
calls synchronous code with sync_to_async itself."""

import sys
import threading
import types

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse
from django.urls import path, reverse

settings.configure(
    DEBUG=False,
    SECRET_KEY="mod-rwsgi-test-only-not-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF="rwsgi_django_asgi_test_urls",
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    USE_TZ=True,
)


def _info(request, kind):
    return {
        "kind": kind,
        "django": django.get_version(),
        "thread": threading.current_thread().name,
        "path": request.path,
        "script_name": request.META.get("SCRIPT_NAME"),
        "reversed": reverse("sync"),
        "header": request.headers.get("X-Test", ""),
        "body": request.body.decode(),
    }


async def async_view(request):
    return JsonResponse(_info(request, "async"))


def sync_view(request):
    return JsonResponse(_info(request, "sync"))


def _blocking_work(request):
    return _info(request, "sync_to_async")


async def calls_sync(request):
    return JsonResponse(await sync_to_async(_blocking_work)(request))


urls = types.ModuleType("rwsgi_django_asgi_test_urls")
urls.urlpatterns = [
    path("async", async_view, name="async"),
    path("sync", sync_view, name="sync"),
    path("calls-sync", calls_sync, name="calls-sync"),
]
sys.modules[urls.__name__] = urls

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings)

application = get_asgi_application()
