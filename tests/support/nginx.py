"""nginx in front of a server under test (tests/test_nginx.py, tests/test_websocket_nginx.py):
a config written into the test's temporary directory, nginx started in the foreground on a
free port, always stopped by PID. ``NGINX`` is None where nginx is not installed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.common import free_port

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
)

# Everything nginx writes goes under the test's temporary directory: pid, logs, temp files.
NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    proxy_http_version 1.1;
{http}
}}
"""


@contextlib.contextmanager
def running_nginx(tmp: Path, http: str) -> Iterator[int]:
    """Run nginx with ``http`` (the inside of its http block, listening on ``{port}``) from
    a config in ``tmp``; yield the port once it accepts; always stop it by PID."""
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, http=http.replace("{port}", str(port))))
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if nginx.poll() is not None:
                out = nginx.stdout.read().decode(errors="replace") if nginx.stdout else ""
                log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
                raise RuntimeError(f"nginx exited with {nginx.returncode}:\n{out}\n{log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start listening within 10 s") from None
                time.sleep(0.05)  # poll interval: nginx says nothing when it listens
        yield port
    finally:
        if nginx.poll() is None:
            os.kill(nginx.pid, signal.SIGTERM)
            try:
                nginx.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(nginx.pid, signal.SIGKILL)
                nginx.wait(timeout=5)
        if nginx.stdout is not None:
            nginx.stdout.close()
