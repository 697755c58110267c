"""Lifespan auto/on/off (SPEC.md section 4) and state sharing, on real processes."""

from __future__ import annotations

import json

import pytest

from tests.support.client import raw_request, simple_get
from tests.support.server import Proc, procs_stopped_at_teardown

pytestmark = pytest.mark.palfrey_only


def get_json(port: int, path: str = "/") -> dict:
    resp, conn = raw_request(port, simple_get(path))
    conn.close()
    assert resp.status == 200, resp
    return json.loads(resp.body)


@pytest.fixture
def procs():
    yield from procs_stopped_at_teardown()


def test_on_exception_in_startup_exits_3(procs):
    proc = Proc("tests.apps_config:raise_on_startup", "--port", "0", "--lifespan", "on")
    assert proc.run_to_exit() == 3
    err = proc.stderr_text()
    assert "ERROR:    Exception in 'lifespan' protocol" in err and "boom in startup" in err
    assert "ERROR:    Application startup failed. Exiting." in err
    assert "running on" not in err


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_message_exits_3(mode):
    proc = Proc("tests.apps_config:startup_failed", "--port", "0", "--lifespan", mode)
    assert proc.run_to_exit() == 3
    lines = proc.lines("stderr")
    assert "ERROR:    database unreachable" in lines, lines
    assert "ERROR:    Application startup failed. Exiting." in lines
    assert not any("running on" in line for line in lines)


def test_auto_exception_means_unsupported_and_serves(procs):
    proc = procs("tests.apps_config:raise_on_startup", "--port", "0")
    assert "INFO:     ASGI 'lifespan' protocol appears unsupported." in proc.lines("stderr")
    assert "Traceback" not in proc.stderr_text()
    resp, conn = raw_request(proc.port, simple_get("/"))
    conn.close()
    assert resp.status == 200 and resp.body == b"ok"


def test_off_never_calls_lifespan(procs):
    proc = procs("tests.apps_config:record_lifespan", "--port", "0", "--lifespan", "off")
    data = get_json(proc.port)
    assert data["seen"] == ["http"]
    assert data["state"] == {}
    assert "Waiting for application startup." not in proc.stderr_text()


def test_state_shared_into_requests_as_shallow_copy(procs):
    proc = procs("tests.apps_config:record_lifespan", "--port", "0", "--lifespan", "on")
    first = get_json(proc.port)
    second = get_json(proc.port)
    assert first["seen"] == ["http", "lifespan"]
    assert first["state"] == {"db": "connected", "counter": 0}
    # The first request's write to its state copy did not reach the second request.
    assert second["state"] == {"db": "connected", "counter": 0}


def test_shutdown_runs_after_sigterm(procs):
    proc = procs("tests.apps_config:record_lifespan", "--port", "0")
    proc.stop()
    lines = proc.lines("stderr")
    i = lines.index("INFO:     Waiting for application shutdown.")
    assert lines[i + 1] == "INFO:     Application shutdown complete.", lines
    assert proc.proc.returncode == 0
