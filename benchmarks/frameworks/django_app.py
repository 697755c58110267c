"""Django: an async view returning JsonResponse (GET /json), served through ASGIHandler.

A small API project: no database, no sessions, the two middlewares every project keeps.
This module is also the ROOT_URLCONF.
"""

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.security.SecurityMiddleware",
                    "django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
django.setup(set_prefix=False)

from django.core.asgi import get_asgi_application
from django.http import HttpResponse, JsonResponse
from django.urls import path


async def json_hello(request):
    return JsonResponse({"message": "Hello, world!"}, json_dumps_params={"separators": (",", ":")})


async def hello(request):
    return HttpResponse(b"Hello, world!", content_type="text/plain")


urlpatterns = [path("json", json_hello), path("", hello)]
app = get_asgi_application()
