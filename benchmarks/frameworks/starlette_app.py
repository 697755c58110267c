"""Starlette: a JSON hello (GET /json) and the probe's GET /."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def json_hello(request):
    return JSONResponse({"message": "Hello, world!"})


async def hello(request):
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[Route("/json", json_hello), Route("/", hello)])
