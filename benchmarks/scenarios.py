"""The benchmark's scenarios: what each one requests, from which app, with which client.

An HTTP/1.1 scenario is driven by wrk (a Lua script in lua/) for throughput and by h2load
with an exact count for instruction counts; an HTTP/2 one by h2load both ways; a WebSocket one
by benchmarks/wsclient.py. Scenarios with the same `app` and protocol share a server start.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import h2load
from benchmarks.frameworks import ITEM
from benchmarks.servers import APP

HERE = Path(__file__).resolve().parent
LUA_DIR = HERE / "lua"
WS_CONNECTIONS = 16
H2_CONNECTIONS, H2_STREAMS = 16, 10
FRAMEWORKS = "benchmarks.frameworks."


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    script: str  # wrk Lua script ("" for WebSocket and HTTP/2)
    description: str
    in_flight: int = 0  # > 0: a WebSocket echo scenario, run by benchmarks/wsclient.py
    app: str = APP
    http2: bool = False
    # The request body (h2load -d; the Lua script builds the same for wrk) and its type.
    body: bytes | None = None
    content_type: str = "application/octet-stream"
    depth: int = 1  # requests per write (pipelining) or streams per HTTP/2 connection
    # Requests (messages) of the two instruction-count phases: N1 and N2.
    counts: tuple[int, int] = (1000, 5000)
    # The bare-ASGI scenario the same requests would be without the framework (for the
    # server/framework split), if any.
    bare: str | None = None

    @property
    def websocket(self) -> bool:
        return self.in_flight > 0

    @property
    def group(self) -> tuple[str, bool]:
        """Scenarios of one group are served by one server start."""
        return (self.app, self.http2)

    def script_args(self, opts) -> list[str]:
        if self.name == "pipelined":
            return [str(opts.pipeline_depth)]
        if self.name == "post":
            return [str(opts.post_size)]
        if self.body is not None:
            return [self.content_type, self.body.decode()]
        return []

    def body_file(self, tmp: Path, opts=None) -> Path | None:
        if self.name == "post" or self.name == "h2-post":
            data = b"p" * (opts.post_size if opts is not None else 16384)
        elif self.body is not None:
            data = self.body
        else:
            return None
        path = tmp / f"{self.name}.body"
        if not path.exists():
            path.write_bytes(data)
        return path

    def client_argv(self, port: int, tmp: Path, opts, *, requests: int | None = None,
                    duration: float | None = None, warmup: float = 0) -> list[str]:
        """The load generator for a fixed count (`requests`) or a `duration`, for every kind
        of scenario but wrk's."""
        if self.websocket:
            argv = [sys.executable, "-m", "benchmarks.wsclient", "--port", str(port),
                    "--path", self.path, "-c", str(WS_CONNECTIONS), "-k", str(self.in_flight)]
            return argv + (["-n", str(requests)] if requests is not None else ["-d", str(duration)])
        depth = opts.pipeline_depth if self.name == "pipelined" else self.depth
        return h2load.argv(
            f"http://127.0.0.1:{port}{self.path}", requests=requests, duration=duration,
            connections=H2_CONNECTIONS if self.http2 else opts.connections, streams=depth,
            http1=not self.http2, body=self.body_file(tmp, opts), content_type=self.content_type,
            warmup=warmup)


def _fw(name: str, app: str, description: str, **kw) -> Scenario:
    return Scenario(name, kw.pop("path", "/json"), kw.pop("script", "hello.lua"), description,
                    app=FRAMEWORKS + app + ":app", bare="hello", counts=kw.pop("counts", (300, 1500)),
                    **kw)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("hello", "/", "hello.lua", "keep-alive GET /, 13-byte body", counts=(2000, 10000)),
    Scenario("pipelined", "/", "pipeline.lua", "GET / pipelined, 16 per write", depth=16,
             counts=(4000, 20000)),
    Scenario("post", "/echo", "post.lua", "POST 16 KiB to /echo, echoed back"),
    Scenario("stream", "/stream", "stream.lua", "GET /stream: 100 x 1 KiB chunks", counts=(200, 1000)),
    # WebSocket echo, 16-byte text messages on 16 connections (wrk cannot speak WebSocket:
    # benchmarks/wsclient.py, pinned like wrk; its "req/s" are messages/s).
    Scenario("ws-echo-1", "/ws", "", "WebSocket echo, 16 conns, 1 message in flight each",
             in_flight=1, counts=(2000, 10000)),
    Scenario("ws-echo-8", "/ws", "", "WebSocket echo, 16 conns, 8 messages in flight each",
             in_flight=8, counts=(4000, 20000)),
    # Real frameworks (item 3 of issue 16): what users see.
    _fw("starlette-json", "starlette_app", "Starlette JSONResponse, GET /json"),
    _fw("fastapi-json", "fastapi_app", "FastAPI GET /json returning a dict"),
    _fw("fastapi-post", "fastapi_app", "FastAPI POST /items, a 201-byte pydantic body model, JSON answer",
        path="/items", script="post_json.lua", body=ITEM, content_type="application/json"),
    _fw("django-json", "django_app", "Django async view, JsonResponse, GET /json (ASGI)",
        counts=(200, 1000)),
    # Static files (item 2): Starlette StaticFiles, which uses http.response.pathsend when
    # the server offers it.
    Scenario("static-64k", "/static/64k.bin", "hello.lua", "Starlette StaticFiles, a 64 KiB file",
             app=FRAMEWORKS + "static_app:app", counts=(500, 2500)),
    Scenario("static-1m", "/static/1m.bin", "hello.lua", "Starlette StaticFiles, a 1 MiB file",
             app=FRAMEWORKS + "static_app:app", counts=(100, 500)),
    # HTTP/2, h2c with prior knowledge (item 5), driven by h2load.
    Scenario("h2-hello", "/", "", f"HTTP/2 GET /, {H2_CONNECTIONS} conns x {H2_STREAMS} streams",
             http2=True, depth=H2_STREAMS, counts=(2000, 10000)),
    Scenario("h2-post", "/echo", "", f"HTTP/2 POST 16 KiB echoed, {H2_CONNECTIONS} conns x {H2_STREAMS} streams",
             http2=True, depth=H2_STREAMS),
)}
