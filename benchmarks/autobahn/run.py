"""Autobahn|Testsuite fuzzingclient against Palfrey's demo WebSocket echo (issue 5).

    python benchmarks/autobahn/run.py                 # cases 1-7 and 10, direct
    python benchmarks/autobahn/run.py --full          # every case (9.x, 12.x, 13.x take minutes)
    python benchmarks/autobahn/run.py --nginx         # through nginx (TCP upstream)
    python benchmarks/autobahn/run.py --install       # make the Python 2.7 virtualenv first

wstest (autobahntestsuite 0.8.2) runs on Python 2.7 only: ``--install`` builds a virtualenv
under benchmarks/autobahn/.venv from pyenv's CPython 2.7.18 (or ``--python2``) with the pins
that still install there. Palfrey serves ``palfrey.demo:app`` (echo at /ws) on a free
127.0.0.1 port and is stopped by PID at the end. Reports go to benchmarks/autobahn/reports/
(gitignored); the summary counts cases per verdict and the exit status is 1 when a case of
1-7 or 10 FAILED.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = HERE / ".venv"
REPORTS = HERE / "reports"
REQUIRED = ("1.", "2.", "3.", "4.", "5.", "6.", "7.", "10.")  # must have no FAILED
# wsaccel: autobahn masks and validates UTF-8 with it when present. Without it the 9.x cases
# (messages up to 16 MiB) did not finish in 25 minutes here; with it they take seconds.
PINS = ["autobahntestsuite==0.8.2", "autobahn==0.10.9", "Twisted==20.3.0", "wsaccel==0.6.6"]
START_TIMEOUT = 15.0
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
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
            proxy_buffering off;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def install(python2: str) -> None:
    subprocess.run([python2, "-m", "pip", "install", "-q", "virtualenv<20.22"], check=True)
    subprocess.run([python2, "-m", "virtualenv", "-q", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PINS], check=True)


def summarize(index: dict) -> tuple[collections.Counter, list[str]]:
    """Counts per verdict ("OK", "NON-STRICT", ...), and the required cases that FAILED."""
    counts: collections.Counter = collections.Counter()
    failed = []
    for cases in index.values():
        for case, result in cases.items():
            verdict = result["behavior"]
            counts[verdict] += 1
            if verdict == "FAILED" and case.startswith(REQUIRED):
                failed.append(case)
            close = result.get("behaviorClose")
            if close == "FAILED" and case.startswith(REQUIRED):
                failed.append(case + " (close)")
    return counts, sorted(set(failed))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="every case, not just 1-7 and 10")
    p.add_argument("--cases", default=None, help='comma-separated case patterns, e.g. "1.*,9.1.*"')
    p.add_argument("--nginx", action="store_true", help="go through nginx (TCP upstream)")
    p.add_argument("--install", action="store_true", help="build the wstest virtualenv first")
    p.add_argument("--python2", default=os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python"))
    p.add_argument("--wstest", default=os.environ.get("WSTEST", str(VENV / "bin" / "wstest")))
    p.add_argument("--server-args", default="", help="extra palfrey options, space-separated")
    opts = p.parse_args()

    if opts.install:
        install(opts.python2)
    if not Path(opts.wstest).exists():
        print(f"wstest not found at {opts.wstest}: run with --install (needs Python 2.7)")
        return 2
    if opts.cases:
        cases = opts.cases.split(",")
    elif opts.full:
        cases = ["*"]
    else:
        cases = [f"{n}.*" for n in (1, 2, 3, 4, 5, 6, 7, 10)]

    label = "nginx" if opts.nginx else "direct"
    outdir = REPORTS / label
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen(
        [sys.executable, "-m", "palfrey", "palfrey.demo:app", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning",
         *opts.server_args.split()],
        cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL,
    )
    nginx = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wait_connectable(port, server, START_TIMEOUT)
            target = port
            if opts.nginx:
                target = free_port()
                conf = Path(tmp) / "nginx.conf"
                conf.write_text(NGINX_CONF.format(tmp=tmp, port=target, upstream=port))
                nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf)],
                                         stdin=subprocess.DEVNULL)
                wait_connectable(target, nginx, START_TIMEOUT)
            spec = {
                "outdir": str(outdir),
                "servers": [{"agent": f"palfrey-{label}", "url": f"ws://127.0.0.1:{target}/ws"}],
                "cases": cases,
                "exclude-cases": [],
                "exclude-agent-cases": {},
            }
            spec_path = Path(tmp) / "fuzzingclient.json"
            spec_path.write_text(json.dumps(spec))
            started = time.monotonic()
            subprocess.run([opts.wstest, "-m", "fuzzingclient", "-s", str(spec_path)],
                           cwd=tmp, check=True, stdout=subprocess.DEVNULL, timeout=3600)
            elapsed = time.monotonic() - started
        finally:
            if nginx is not None:
                stop(nginx)
            stop(server)

    index = json.loads((outdir / "index.json").read_text())
    counts, failed = summarize(index)
    print(f"Autobahn fuzzingclient ({label}, cases {','.join(cases)}, {elapsed:.0f} s): "
          + ", ".join(f"{verdict} {n}" for verdict, n in sorted(counts.items())))
    print(f"report: {outdir / 'index.html'}")
    if failed:
        print("FAILED in required cases: " + " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
