"""A small single-file Django project for mod_rwsgi's framework tests: a rendered page with a
form protected by Django's CSRF middleware, and the view that accepts its POST."""

import sys
import types

import django
from django.conf import settings
from django.http import JsonResponse
from django.template import engines
from django.urls import path, reverse

settings.configure(
    DEBUG=False,
    SECRET_KEY="mod-rwsgi-test-only-not-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF="rwsgi_django_test_urls",
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    INSTALLED_APPS=[],
    USE_TZ=True,
)

PAGE = """<!doctype html>
<title>Django on mod_rwsgi</title>
<h1>Django {{ version }}</h1>
<form method="post" action="{% url 'greet' %}">{% csrf_token %}
  <input name="name"><button>Greet</button>
</form>
"""


def index(request):
    from django.http import HttpResponse
    template = engines["django"].from_string(PAGE)
    return HttpResponse(template.render({"version": django.get_version()}, request))


def greet(request):
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    return JsonResponse({"greeting": f"Hello, {request.POST.get('name', '')}!",
                         "back": reverse("index")})


# The URLconf as a module of its own: Django imports ROOT_URLCONF by name, and a WSGI
# script is not importable under a stable name.
urls = types.ModuleType("rwsgi_django_test_urls")
urls.urlpatterns = [
    path("", index, name="index"),
    path("greet", greet, name="greet"),
]
sys.modules[urls.__name__] = urls

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings)

application = get_wsgi_application()
