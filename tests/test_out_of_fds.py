"""Out of file descriptors (issue 14, item 8): more clients than RLIMIT_NOFILE allows.

accept() then fails with EMFILE. Palfrey must log it once, stop accepting for a moment, keep
serving the connections it has, accept the waiting clients once descriptors free up, and
neither spin nor exit. Left to the loops, uvloop (libuv) resets every waiting client and logs
nothing, and asyncio logs a traceback per attempt, thousands a second (src/palfrey/listener.py).
"""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from tests.support.client import RawConn, ReadTimeout, simple_get

pytestmark = pytest.mark.palfrey_only

APP = "tests.apps_hardening:app"
FD_LIMIT = 64
CLIENTS = 100  # more than the server has descriptors for
OUT_OF_FDS = "Cannot accept connections: Too many open files"
AGAIN = "Accepting connections again."
# Far more than a process waiting in epoll uses over the window, far less than a spinning one
# (which burns the whole window): a bound on work done, not on time taken.
CPU_WINDOW_S = 2.0
MAX_CPU_S = 0.5


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered(conn: RawConn, timeout: float) -> bool:
    conn.timeout = timeout
    try:
        return conn.read_response().status == 200
    except (ReadTimeout, TimeoutError):
        return False


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_out_of_fds_logs_once_backs_off_and_recovers(server_factory, loop):
    server = server_factory(APP, "--no-access-log", "--loop", loop,
                            "--timeout-keep-alive", "120")  # fmt: skip
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    mark = server.mark()
    conns = []
    try:
        for _ in range(CLIENTS):
            conn = RawConn(server.port)
            conn.send(simple_get("/"))
            conns.append(conn)
        first_answered = answered(conns[0], 5.0)
        time.sleep(1.0)  # the others that get in are answered meanwhile
        served = [conns[0]] * first_answered + [c for c in conns[1:] if answered(c, 0.05)]
        waiting = [c for c in conns if c not in served]
        assert 0 < len(served) < FD_LIMIT and waiting, (len(served), len(waiting))
        assert server.wait_for_log(OUT_OF_FDS, "stderr", 5, mark), server.since(mark)[-20:]

        # Backed off: the process sleeps while clients wait in the backlog.
        before = cpu_seconds(server.pid)
        time.sleep(CPU_WINDOW_S)
        used = cpu_seconds(server.pid) - before
        assert used < MAX_CPU_S, f"{used:.2f} s of CPU in {CPU_WINDOW_S} s: spinning"

        # The connections it has are still served, and it said so once, not per attempt.
        for conn in served[:5]:
            conn.send(simple_get("/echo"))
            assert answered(conn, 5.0)
        lines = server.since(mark)
        assert sum(OUT_OF_FDS in x for x in lines) == 1, lines[-20:]
        assert not [x for x in lines if "Traceback" in x or x.startswith("ERROR")], lines[-20:]

        # Descriptors free up: the clients that waited are served, none was reset.
        for conn in served[: len(served) // 2 + 1]:
            conn.close()
        late = [c for c in waiting[:10] if answered(c, 10.0)]
        assert len(late) == 10, [(c.reset, bytes(c.received[:60])) for c in waiting[:10]]
        assert server.wait_for_log(AGAIN, "stderr", 5, mark)
        assert server.alive()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass  # still listening
    finally:
        for conn in conns:
            conn.close()
