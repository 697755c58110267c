"""Starlette StaticFiles at /static/ over benchmarks.frameworks.static_dir() (scenario static)."""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from benchmarks.frameworks import static_dir


async def hello(request):
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[Mount("/static", StaticFiles(directory=static_dir())), Route("/", hello)])
