"""The deployment recipes in deploy/, exercised (SPEC.md section 9).

- Kubernetes: the manifests validate (strict) against the Kubernetes API schemas that
  kubernetes-validate bundles, the shutdown timing adds up, and Palfrey started with the
  container's args answers the probes and stops on SIGTERM with status 0.
- systemd: a launcher does what systemd does for palfrey.socket + palfrey.service (binds
  ListenStream, puts it on fd 3, sets LISTEN_FDS/LISTEN_PID, execs ExecStart): a
  connection made before Palfrey starts waits in the backlog and is served, a stop
  (SIGTERM to the main process, KillMode=mixed) exits 0 and leaves no worker, and a second
  start serves on the same socket.
- The Dockerfile is run (without Docker) by deploy/container_check.py, which .ci/run calls.
"""

from __future__ import annotations

import configparser
import copy
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.client import get
from tests.support.common import ROOT, START_TIMEOUT, free_port, wait_until
from tests.support.server import Proc, SupervisedServer, process_gone

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
PALFREY = Path(sys.executable).parent / "palfrey"  # the console script of this install


# -- Kubernetes ---------------------------------------------------------------------------


def manifests() -> dict[str, dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def arg(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return value


def schema_versions() -> list[str]:
    versions = kubernetes_validate.utils.all_versions()
    return [versions[0], versions[-1]]


@pytest.mark.parametrize("version", schema_versions())
def test_kubernetes_manifests_match_the_api_schemas(version):
    found = manifests()
    assert set(found) == {"Deployment", "Service"}
    for doc in found.values():
        # Raises on a schema error, and on a kind/apiVersion it has no schema for.
        kubernetes_validate.validate(doc, version, strict=True)
    # The check can fail: a misspelt field (strict) and a wrong type are refused.
    for mutate in (lambda c: c.update(readinesProbe=c.pop("readinessProbe")),
                   lambda c: c["ports"][0].update(containerPort="8000")):
        broken = copy.deepcopy(found["Deployment"])
        mutate(container(broken))
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_shutdown_timing_probes_and_wiring():
    found = manifests()
    deployment, service = found["Deployment"], found["Service"]
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    args = main["args"]
    assert deployment["spec"]["replicas"] >= 2
    assert arg(args, "workers") == "1"  # one worker per pod: replicas scale
    assert arg(args, "forwarded-allow-ips")
    # preStop pause, then SIGTERM and the graceful shutdown, all before the SIGKILL.
    pause = main["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep" and int(pause[1]) >= 5
    graceful = int(arg(args, "timeout-graceful-shutdown"))
    assert pod["terminationGracePeriodSeconds"] > int(pause[1]) + graceful
    for probe in ("readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["port"] == "http", probe
    assert [p["name"] for p in main["ports"]] == ["http"]
    assert int(arg(args, "port")) == main["ports"][0]["containerPort"]
    # The Service reaches these pods on that port.
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # The pod runs as the image's user and group (deploy/Dockerfile).
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile).group(1)
    gid = re.search(r"groupadd .*--gid (\d+)", dockerfile).group(1)
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)
    assert pod["securityContext"]["runAsNonRoot"] is True


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_kubernetes_container_args_serve_the_probes_and_stop_on_sigterm():
    main = container(manifests()["Deployment"])
    port = free_port()
    # The container's args, bound to loopback on a free port instead of 0.0.0.0:8000.
    local = {"--host": "--host=127.0.0.1", "--port": f"--port={port}"}
    args = [local.get(a.split("=")[0], a) for a in main["args"]]
    server = Proc(*args)
    try:
        server.start()
        for probe in ("readinessProbe", "livenessProbe"):
            status, _ = get(port, main[probe]["httpGet"]["path"])
            assert 200 <= status < 400, (probe, status)  # what the kubelet counts as success
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(int(arg(args, "timeout-graceful-shutdown"))) == 0
        assert server.wait_for_log(r"Finished server process", timeout=5), server.stderr_text()
    finally:
        server.stop()


# -- systemd ------------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(SYSTEMD / name)
    return parser


# systemd's own start-up of a socket-activated service, after fork: the passed socket is
# moved to fd 3 (SD_LISTEN_FDS_START) and LISTEN_PID names the process that execs the
# service, so it is set here, in that process, just before exec.
ACTIVATE = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)  # the copy on 3 is inheritable
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


class SocketActivated(SupervisedServer):
    """ExecStart run as systemd runs a socket-activated service (ACTIVATE), in its own
    process group; ``start()`` waits for the running line."""

    def __init__(self, listener: socket.socket, exec_start: list[str],
                 environment: dict[str, str]) -> None:
        env = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "palfrey.socket", **environment}
        super().__init__(*exec_start, env=env, pass_fds=(listener.fileno(),))

    def command(self) -> list[str]:
        return [sys.executable, "-c", ACTIVATE, str(self.pass_fds[0]), *self.argv]


def systemd_listener(socket_unit: configparser.ConfigParser) -> socket.socket:
    """ListenStream= of the unit, on 127.0.0.1 and a free port instead of its address."""
    section = socket_unit["Socket"]
    address = section["ListenStream"]
    assert re.fullmatch(r"(?:[\d.]+:)?\d+", address), address  # an IPv4 [host:]port
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if section.getboolean("NoDelay", fallback=False):
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(int(section.get("Backlog", "128")))
    return listener


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify wants ExecStart's binary to exist: point it at this install's palfrey.
    for name in ("palfrey.socket", "palfrey.service"):
        text = (SYSTEMD / name).read_text().replace("/opt/palfrey/bin/palfrey", str(PALFREY))
        (tmp_path / name).write_text(text)
    out = subprocess.run([analyze, "verify", "palfrey.socket", "palfrey.service"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    # Unknown keys are only warnings: any output fails the check.
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_systemd_socket_activation_serves_and_stops_gracefully():
    service = unit("palfrey.service")["Service"]
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0] == "/opt/palfrey/bin/palfrey"
    assert exec_start[exec_start.index("--fd") + 1] == "3"
    exec_start[0] = str(PALFREY)  # this install's console script
    environment = dict(item.split("=", 1) for item in shlex.split(service["Environment"]))
    graceful = float(exec_start[exec_start.index("--timeout-graceful-shutdown") + 1])
    stop_timeout = float(service["TimeoutStopSec"])
    assert stop_timeout > graceful
    workers = int(exec_start[exec_start.index("--workers") + 1])

    with systemd_listener(unit("palfrey.socket")) as listener:
        port = listener.getsockname()[1]
        for round_ in ("first start", "restart on the same socket"):
            # A client connects before Palfrey runs: systemd's socket already listens.
            early = socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT)
            early.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            server = SocketActivated(listener, exec_start, environment).start()
            try:
                with early:
                    answer = b""
                    while chunk := early.recv(65536):
                        answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 "), (round_, answer, server.stderr_text())
                assert answer.endswith(b"Hello from Palfrey!")
                assert server.match.group(5) == f"('127.0.0.1', {port})", server.match.group(0)
                children = wait_until(lambda: len(server.worker_pids()) == workers
                                    and server.worker_pids(), START_TIMEOUT)
                assert children, server.stderr_text()
                # Every worker serving (a worker stopped while it still boots just exits).
                for pid in children:
                    assert server.wait_for_log(rf"Started server process \[{pid}\]",
                                               timeout=START_TIMEOUT), server.stderr_text()
                assert wait_until(lambda: server.stderr_text().count(
                    "Application startup complete") == workers, START_TIMEOUT)
                assert get(port, "/")[0] == 200
                # systemctl stop: SIGTERM to the main process (KillMode=mixed).
                server.send_signal(signal.SIGTERM)
                assert server.wait_exit(stop_timeout) == 0, (round_, server.stderr_text())
                assert server.wait_for_log(rf"Stopping parent process \[{server.pid}\]")
                for pid in children:
                    assert server.wait_for_log(rf"Finished server process \[{pid}\]"), pid
                # Nothing left for systemd's SIGKILL to find.
                assert wait_until(lambda: all(process_gone(p) for p in children), 10)
            finally:
                server.stop()
