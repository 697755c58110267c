"""Serve an app inside a program that owns the event loop, make one request, stop."""

import asyncio

from main import app

from palfrey import Config, Server


async def main() -> None:
    server = Server(Config(app, host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # a failed startup exits the process instead
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
    print((await reader.read()).split(b"\r\n")[0].decode())  # HTTP/1.1 200 OK
    writer.close()

    server.should_exit = True  # the same graceful shutdown as SIGTERM
    await serving


if __name__ == "__main__":
    asyncio.run(main())
