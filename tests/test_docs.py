"""The documentation site (docs/, mkdocs.yml): it builds strictly, its reference lists every
option, every WARNING/ERROR the code can log is explained, and every code sample is a tested
file or a command the real parsers accept.

The samples under docs/examples/ run here against real servers (Palfrey, gunicorn, nginx)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from palfrey.protocols.common import ERROR_MESSAGES
from tests.support.client import get, unix_request
from tests.support.common import ROOT, free_port
from tests.support.nginx import running_nginx
from tests.support.server import Proc, clean_env, procs_stopped_at_teardown

DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
SRC = ROOT / "src" / "palfrey"


def load_hook():
    spec = importlib.util.spec_from_file_location("palfrey_docs", DOCS / "hooks" / "palfrey_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load_hook()


def pages() -> dict[str, str]:
    return {
        str(path.relative_to(DOCS)): path.read_text()
        for path in DOCS.rglob("*.md")
        if "examples" not in path.parts
    }


FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def fences(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


# -- the build and the reference --------------------------------------------------------------


def test_strict_build_and_the_generated_reference(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT, env=clean_env({"NO_MKDOCS_2_WARNING": "1"}),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    def page(name: str) -> str:
        return (site / name / "index.html").read_text()

    cli, env, config = page("reference/cli"), page("reference/environment"), page("reference/config")
    for param in hook.cli_params():
        for flag in [*param.opts, *param.secondary_opts]:
            if flag.startswith("-"):
                assert f"<code>{flag}</code>" in cli, flag
        if param.envvar:
            assert f"<code>{param.envvar}</code>" in cli and f"<code>{param.envvar}</code>" in env
    assert "<code>PALFREY_HEADER</code>" in env
    for name in hook.ENVIRONMENT:
        assert f"<code>{name}</code>" in env
    for name in hook.config_parameters():
        assert f"<code>{name}</code>" in config, name
    assert (site / "benchmarks" / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The benchmark figures are the committed ones.
    _, data = hook.latest_result("hello")
    rps = data["summary"]["scenarios"]["hello"]["palfrey"]["rps_median"]
    assert f"{rps:,.0f}" in page("operations/benchmarks")


def test_every_option_has_a_reference_row() -> None:
    """Without building: each generated table names every option, variable and parameter."""
    cli, env, config = hook.cli_options_markdown(), hook.env_vars_markdown(), hook.config_params_markdown()
    for param in hook.cli_params():
        for flag in [*param.opts, *param.secondary_opts]:
            if flag.startswith("-"):
                assert f"`{flag}`" in cli
        if param.envvar:
            assert f"`{param.envvar}`" in env
    for name in hook.config_parameters():
        assert f"| `{name}` |" in config
    assert hook.environment_read_by_source() <= set(hook.ENVIRONMENT)


def test_an_unknown_marker_fails_the_build() -> None:
    with pytest.raises(ValueError, match="unknown generated part"):
        hook.render("<!-- palfrey:no-such-table -->")


def test_uvicorn_comparison_is_taken_from_both_packages() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    text = hook.uvicorn_cli_markdown() + hook.uvicorn_config_markdown()
    assert uvicorn.__version__ in text
    assert "`--limit-header-size`" in text  # Palfrey-only
    assert "missing in Palfrey" not in text and "**Missing in Palfrey:** none." in text


# -- the troubleshooting page knows every WARNING and ERROR -----------------------------------

LOG_METHODS = {"warning", "error", "exception", "critical"}
PLACEHOLDER = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrif]|\{[^}]*\}")
# Log calls whose message is not a literal: what the page must say about each instead.
DYNAMIC = {
    # StartupError's lines, logged where it is caught: the messages it is raised with
    # (collected below from every `StartupError(...)`).
    ("main.py", "message"): None,
    ("worker.py", "message"): None,
    ("workers.py", "message"): None,
    ("lifespan.py", "message['message']"): "lifespan.startup.failed",  # the app's own text
    ("pyx", "ERROR_MESSAGES[status]"): None,  # every value of ERROR_MESSAGES (below)
    ("http2.py", "ERROR_MESSAGES[status]"): None,  # the same, for HTTP/2 streams
}
# `raise StartupError(str(exc))`: bind errors, as the OS words them.
STARTUP_ERROR_DYNAMIC = {"str(exc)": "[Errno 98] Address already in use"}


def _fragments(template: str) -> list[str]:
    return [part.strip() for part in PLACEHOLDER.split(template) if len(part.strip()) > 2]


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "{}" for v in node.values
        )
    return None


def logged_messages() -> list[tuple[str, str]]:
    """(where, template) of every WARNING/ERROR/CRITICAL/exception log call in src/palfrey."""
    found: list[tuple[str, str]] = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and "log" in ast.unparse(node.func.value).lower()
                and node.args
            ):
                continue
            text = _literal(node.args[0])
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            if text is None:
                key = (path.name, ast.unparse(node.args[0]).replace('"', "'"))
                assert key in DYNAMIC, f"{where}: a log message that is not a literal: {key}"
                if DYNAMIC[key]:
                    found.append((where, DYNAMIC[key]))
            else:
                found.append((where, text))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            where = f"{path.relative_to(SRC)}:{call.lineno}"
            if ast.unparse(call.func) == "StartupError":
                for argument in call.args:
                    if isinstance(argument, ast.Starred):  # StartupError(*problems)
                        continue
                    text = _literal(argument)
                    if text is None:
                        text = STARTUP_ERROR_DYNAMIC[ast.unparse(argument)]
                    found.append((where, text))
            elif ast.unparse(call.func) == "problems.append":  # config.py: StartupError(*problems)
                found.append((where, _literal(call.args[0]) or ""))
    compiled = re.compile(
        r"logger\.(?:warning|error|exception|critical)\(\s*(\"(?:[^\"\\]|\\.)*\"|[\w\[\]\.]+)"
    )
    for path in [*SRC.glob("*.pyx"), *SRC.glob("*.pxi")]:
        source = path.read_text()
        for match in compiled.finditer(source):
            where = f"{path.name}:{source.count(chr(10), 0, match.start()) + 1}"
            argument = match.group(1)
            if argument.startswith('"'):
                found.append((where, ast.literal_eval(argument)))
            else:
                assert ("pyx", argument) in DYNAMIC, f"{where}: not a literal: {argument}"
    found += [("protocols/common.py", text) for text in ERROR_MESSAGES.values()]
    return found


def test_every_warning_and_error_is_on_the_troubleshooting_page() -> None:
    page = (DOCS / "guides" / "troubleshooting.md").read_text()
    messages = logged_messages()
    assert len(messages) > 40  # the extraction found the log calls
    missing = [
        (where, template)
        for where, template in messages
        if any(fragment not in page for fragment in _fragments(template))
    ]
    assert not missing, "WARNING/ERROR messages not explained in docs/guides/troubleshooting.md:\n" + "\n".join(
        f"  {where}: {template!r}" for where, template in missing
    )


def test_import_errors_are_on_the_troubleshooting_page() -> None:
    """The text after ``Error loading ASGI app.`` comes from importer.py's exceptions."""
    page = (DOCS / "guides" / "troubleshooting.md").read_text()
    tree = ast.parse((SRC / "importer.py").read_text())
    raised = [
        _literal(node.exc.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args
    ]
    assert len(raised) == 3
    for template in raised:
        assert all(fragment in page for fragment in _fragments(template or "")), template


# -- every code sample is a tested file or a command the parsers accept -------------------------

INCLUDED_ONLY = {
    "python", "py", "nginx", "yaml", "yml", "json", "ini", "toml", "dockerfile", "systemd",
}
SNIPPET = re.compile(r'^--8<-- "((?:docs/examples|deploy)/[^"]+)"$')
# The recipes of deploy/ the guides include, and what exercises each (SPEC.md section 9).
DEPLOY_RECIPES = {
    "deploy/Dockerfile": "deploy/container_check.py",
    "deploy/Dockerfile.dockerignore": "deploy/container_check.py",
    "deploy/kubernetes/deployment.yaml": "tests/test_deploy.py::test_kubernetes_container_args_serve_the_probes_and_stop_on_sigterm",
    "deploy/kubernetes/service.yaml": "tests/test_deploy.py::test_kubernetes_shutdown_timing_probes_and_wiring",
    "deploy/systemd/palfrey.socket": "tests/test_deploy.py::test_systemd_socket_activation_serves_and_stops_gracefully",
    "deploy/systemd/palfrey.service": "tests/test_deploy.py::test_systemd_socket_activation_serves_and_stops_gracefully",
}


def test_code_samples_are_included_from_tested_files() -> None:
    included: set[str] = set()
    for name, text in pages().items():
        for language, body in fences(text):
            lines = body.strip().splitlines()
            if all(SNIPPET.match(line) for line in lines) and lines:
                included.update(SNIPPET.match(line).group(1) for line in lines)
            else:
                assert language not in INCLUDED_ONLY, f"{name}: a {language} sample written inline"
    for path in included:
        assert (ROOT / path).exists(), path
    examples = {f"docs/examples/{p.name}" for p in EXAMPLES.iterdir() if p.is_file()}
    assert examples == {p for p in included if p.startswith("docs/")}, (examples ^ included)
    # Every recipe is on a page, and something that exists exercises it.
    recipes = {str(p.relative_to(ROOT)) for p in (ROOT / "deploy").rglob("*")
               if p.is_file() and p.name != "container_check.py" and "__pycache__" not in p.parts}
    assert recipes == set(DEPLOY_RECIPES) == {p for p in included if p.startswith("deploy/")}
    for recipe, exercised_by in DEPLOY_RECIPES.items():
        path, _, test = exercised_by.partition("::")
        source = (ROOT / path).read_text()
        assert (f"def {test}(" if test else Path(recipe).name) in source, (recipe, exercised_by)
    untested = sorted(set(EXAMPLE_TESTS) ^ {p.split("/")[-1] for p in examples})
    assert not untested, f"examples without a test (or tests of missing examples): {untested}"
    for test_name in EXAMPLE_TESTS.values():
        assert callable(globals()[test_name])


REPO_PATH = re.compile(r"`((?:deploy|scripts|tests|src|docs|benchmarks|vendor)/[\w./-]*)`")


def test_repository_paths_named_on_the_pages_exist() -> None:
    """`deploy/Dockerfile`, `scripts/build_wheels.py`...: a renamed file fails here."""
    named = {(name, path) for name, text in pages().items() for path in REPO_PATH.findall(text)}
    assert len(named) > 20
    missing = [(name, path) for name, path in named if not (ROOT / path).exists()]
    assert not missing, missing


def test_deploy_guides_quote_the_recipes_numbers() -> None:
    """The shutdown timing on the Kubernetes and systemd pages is the manifests' and units'."""
    from tests.test_deploy import arg, container, manifests, unit

    deployment = manifests()["Deployment"]
    main = container(deployment)
    pause = int(main["lifecycle"]["preStop"]["exec"]["command"][1])
    graceful = int(arg(main["args"], "timeout-graceful-shutdown"))
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    page = (DOCS / "guides" / "kubernetes.md").read_text()
    for quoted in (f"preStop: sleep {pause}\n", f"t = {pause} s ", f"t ≤ {pause + graceful} s ",
                   f"--timeout-graceful-shutdown={graceful} after", f"t = {grace} s ",
                   f"`preStop` ({pause} s)", f"`--timeout-graceful-shutdown` ({graceful} s)",
                   f"`terminationGracePeriodSeconds` ({grace} s)",
                   f"{grace} > {pause} + {graceful}"):
        assert quoted in page, quoted
    service = unit("palfrey.service")["Service"]
    exec_start = shlex.split(service["ExecStart"])
    page = (DOCS / "guides" / "systemd.md").read_text()
    for quoted in (f"`TimeoutStopSec={service['TimeoutStopSec']}`",
                   f"`--timeout-graceful-shutdown {arg_after(exec_start, '--timeout-graceful-shutdown')}`",
                   f"`--workers {arg_after(exec_start, '--workers')}`",
                   f"`RestartSec={service['RestartSec']}`",
                   f"backlog of {unit('palfrey.socket')['Socket']['Backlog']}"):
        assert quoted in page, quoted
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "deploy" / "Dockerfile").read_text()).group(1)
    assert f"uid and gid {uid}" in (DOCS / "guides" / "docker.md").read_text()


def arg_after(words: list[str], option: str) -> str:
    return words[words.index(option) + 1]


def shell_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name, text in pages().items():
        for language, body in fences(text):
            if language not in ("sh", "bash", "console"):
                continue
            for line in body.splitlines():
                words = shlex.split(line, comments=True)
                if words[:1] == ["palfrey"] or words[:1] == ["gunicorn"]:
                    commands.append((name, words))
                elif words[:3] == ["python", "-m", "palfrey"]:
                    commands.append((name, ["palfrey", *words[3:]]))
    return commands


def test_documented_commands_are_accepted_by_the_real_parsers(monkeypatch) -> None:
    from gunicorn.config import Config as GunicornConfig
    from gunicorn.util import load_class

    commands = shell_commands()
    assert sum(words[0] == "palfrey" for _, words in commands) >= 10
    assert any(words[0] == "gunicorn" for _, words in commands)
    monkeypatch.chdir(EXAMPLES)  # where the files the commands name live
    command = hook.cli_command()
    for page, words in commands:
        if words[0] == "palfrey":
            try:
                command.make_context("palfrey", words[1:])
            except Exception as exc:  # noqa: BLE001  (click's usage errors)
                pytest.fail(f"{page}: {shlex.join(words)}: {exc}")
        else:
            config = GunicornConfig()
            parsed = config.parser().parse_args(words[1:])
            for key, value in vars(parsed).items():
                if key != "args" and value is not None:
                    config.set(key.lower(), value)
            assert load_class(config.worker_class_str) is not None, (page, words)


# -- the examples, run ---------------------------------------------------------------------------

EXAMPLE_TESTS = {
    "main.py": "test_getting_started_session",
    "embedded.py": "test_embedded_run",
    "server_api.py": "test_server_api",
    "lifespan_state.py": "test_lifespan_state",
    "websocket_echo.py": "test_websocket_echo",
    "streaming.py": "test_streaming",
    "whoami.py": "test_nginx_example",
    "nginx.conf": "test_nginx_example",
    "nginx-http2.conf": "test_nginx_http2_example",
    "tls_context.py": "test_tls_context",
    "gunicorn.conf.py": "test_gunicorn_config_file",
    "custom_worker.py": "test_custom_gunicorn_worker",
    "logging.json": "test_json_logging_example",
    "extensions.py": "test_extensions_example",
}


@pytest.fixture
def example_server():
    yield from procs_stopped_at_teardown(cwd=EXAMPLES)


class Script(Proc):
    """``python ARGS`` in docs/examples."""

    def command(self) -> list[str]:
        return [sys.executable, *self.argv]


def run_curl_session(example_server, page: str, serve: str) -> int:
    """Start the page's ``serve`` command (an ``sh`` block of its own) on a free port, then
    run each ``sh`` block that is one curl command there: the ``text`` block after it
    lists lines curl's output must hold, in that order. Returns how many ran."""
    blocks = fences((DOCS / page).read_text())
    command = next(body.strip() for lang, body in blocks if lang == "sh" and body.strip() == serve)
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (.ci/run installs it)")
    port = free_port()
    server = example_server(*shlex.split(command)[1:], env={"PALFREY_PORT": str(port)})
    assert server.port == port
    sessions = [
        (body.strip(), blocks[i + 1][1])
        for i, (lang, body) in enumerate(blocks[:-1])
        if lang == "sh" and body.strip().startswith("curl ") and blocks[i + 1][0] == "text"
    ]
    for curl_line, expected in sessions:
        words = shlex.split(curl_line.replace(":8000", f":{port}"))
        output = subprocess.run(
            [curl, *words[1:]], capture_output=True, text=True, timeout=10, check=False
        )
        assert output.returncode == 0, (curl_line, output.stderr)
        got = [line.rstrip() for line in output.stdout.replace("\r\n", "\n").splitlines()]
        assert any(line.startswith("date: ") for line in got), got
        position = 0
        for line in expected.strip().splitlines():
            assert line in got[position:], (curl_line, line, got)
            position = got.index(line, position) + 1
    return len(sessions)


def test_getting_started_session(example_server) -> None:
    assert run_curl_session(example_server, "guides/getting-started.md", "palfrey main:app") == 1


def test_http2_guide_sessions(example_server) -> None:
    """Prior knowledge and the h2c upgrade, with curl, as the HTTP/2 guide shows them."""
    assert run_curl_session(example_server, "guides/http2.md", "palfrey main:app --http2") == 2


def test_embedded_run() -> None:
    port = free_port()
    server = Script("embedded.py", env={"PORT": str(port)}, cwd=EXAMPLES).start()
    try:
        assert server.port == port
        assert get(port) == (200, b"Hello, world!")
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0
    finally:
        server.stop()


def test_server_api() -> None:
    result = subprocess.run(
        [sys.executable, "server_api.py"], cwd=EXAMPLES, env=clean_env(),
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HTTP/1.1 200 OK\n"


def test_lifespan_state(example_server) -> None:
    server = example_server("lifespan_state:app", "--port", "0")
    assert get(server.port) == (200, b"Hello from the lifespan")
    mark = server.mark()
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert server.wait_for_log("Application shutdown complete.", mark=mark)


def test_websocket_echo(example_server) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    server = example_server("websocket_echo:app", "--port", "0")
    with connect(f"ws://127.0.0.1:{server.port}/echo", open_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5) == b"\x00\x01"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/other", open_timeout=5)
    assert refused.value.response.status_code == 403


def test_streaming(example_server) -> None:
    server = example_server("streaming:app", "--port", "0")
    body = b"x" * 200_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % len(body) + body
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, chunked = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"\r\ntransfer-encoding: chunked" in head
    assert chunked == b"16\r\nreceived 200000 bytes\n\r\n5\r\ndone\n\r\n0\r\n\r\n"


def test_extensions_example(example_server) -> None:
    """extensions.py: a 103 with the Link value, then the file (by pathsend) as the body."""
    from tests.support.client import RawConn

    server = example_server("extensions:app", "--port", "0")
    with RawConn(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        hints = conn.read_response()
        assert (hints.status, hints.get_all("link")) == (103, [b"</style.css>; rel=preload; as=style"])
        final = conn.read_response()
        assert final.status == 200 and final.body == (EXAMPLES / "extensions.py").read_bytes()


def test_nginx_example(example_server, tmp_path: Path) -> None:
    from tests.support.nginx import NGINX

    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    from websockets.sync.client import connect

    sock_path = str(tmp_path / "palfrey.sock")
    conf = (EXAMPLES / "nginx.conf").read_text()
    assert "listen 80;" in conf and "/run/palfrey.sock" in conf
    conf = conf.replace("listen 80;", "listen 127.0.0.1:{port};").replace("/run/palfrey.sock", sock_path)
    documented = next(
        line.split("#", 1)[1].split()
        for line in (EXAMPLES / "nginx.conf").read_text().splitlines()
        if "palfrey whoami:app" in line
    )
    args = [a.replace("/run/palfrey.sock", sock_path) for a in documented[1:]]
    example_server(*args)
    assert unix_request(sock_path, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(
        b"client=- scheme=http\n"
    )
    with running_nginx(tmp_path, conf) as port:
        assert get(port) == (200, b"client=127.0.0.1 scheme=http\n")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
                b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        # The forged hop is left of the one nginx appended: ignored; nginx's $scheme wins.
        assert data.endswith(b"client=127.0.0.1 scheme=http\n"), data
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
            assert ws.recv(timeout=5) == "client=127.0.0.1 scheme=ws\n"


def test_nginx_http2_example(example_server, tmp_path: Path) -> None:
    """nginx-http2.conf: HTTP/2 over TLS to nginx, h2c (grpc_pass) to Palfrey; a WebSocket
    through the /ws/ location, by HTTP/1.1."""
    from tests.support.nginx import NGINX

    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    trustme = pytest.importorskip("trustme")
    from websockets.sync.client import connect

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    conf = (EXAMPLES / "nginx-http2.conf").read_text()
    documented = next(
        line.split("#", 1)[1].split() for line in conf.splitlines() if "palfrey whoami:app" in line
    )
    port = free_port()
    assert "--port" in documented and conf.count("127.0.0.1:8000") == 2
    documented[documented.index("--port") + 1] = str(port)
    assert "listen 443 ssl http2;" in conf and "/etc/ssl/palfrey/" in conf
    conf = (
        conf.replace("listen 443 ssl http2;", "listen 127.0.0.1:{port} ssl http2;")
        .replace("/etc/ssl/palfrey/", f"{tmp_path}/")
        .replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    )
    server = example_server(*documented[1:])
    assert server.port == port
    def client_context() -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        return context

    with running_nginx(tmp_path, conf) as proxy:
        with httpx.Client(http2=True, verify=client_context(), timeout=10) as client:
            response = client.get(f"https://127.0.0.1:{proxy}/?via=nginx")
        assert response.http_version == "HTTP/2", response
        assert response.text == "client=127.0.0.1 scheme=https\n"
        # nginx spoke HTTP/2 to Palfrey (the client address is X-Forwarded-For's: port 0).
        assert server.wait_for_log(r'127\.0\.0\.1:0 - "GET /\?via=nginx HTTP/2" 200', "stdout", 5)
        # (httpx has set ALPN h2 on its context: a WebSocket client offers http/1.1 only.)
        with connect(f"wss://127.0.0.1:{proxy}/ws/", ssl=client_context(), open_timeout=5) as ws:
            assert ws.recv(timeout=5) == "client=127.0.0.1 scheme=wss\n"


def test_tls_context(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    port = free_port()
    launcher = (
        f"import palfrey, tls_context; palfrey.run('main:app', port={port}, "
        f"ssl_certfile={str(tmp_path / 'cert.pem')!r}, ssl_keyfile={str(tmp_path / 'key.pem')!r}, "
        "ssl_context_factory=tls_context.tls13_only)"
    )
    server = Script("-c", launcher, cwd=EXAMPLES).start()
    try:
        assert server.match.group(1) == "https"
        tls13 = ssl.create_default_context()
        ca.configure_trust(tls13)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            tls13.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            assert conn.version() == "TLSv1.3"
        tls12 = ssl.create_default_context()
        ca.configure_trust(tls12)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises(ssl.SSLError),
        ):
            tls12.wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        server.stop()


def _gunicorn(*args: str, worker: str):
    from tests.test_gunicorn_worker import Gunicorn

    server = Gunicorn(*args, cwd=EXAMPLES)
    server.worker = worker
    return server


def test_gunicorn_config_file() -> None:
    pytest.importorskip("gunicorn")
    server = _gunicorn("-c", "gunicorn.conf.py", "-w", "1", "main:app",
                       worker="palfrey.workers.PalfreyWorker").start()
    try:
        server.wait_booted(1)
        assert get(server.port) == (200, b"Hello, world!")
        assert server.wait_for_log(r'"GET / HTTP/1\.1" 200', "stdout")
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(15) == 0, server.stderr_text()
    finally:
        server.stop()


def test_custom_gunicorn_worker() -> None:
    pytest.importorskip("gunicorn")
    server = _gunicorn("-w", "1", "main:app", worker="custom_worker.LimitedWorker").start()
    try:
        server.wait_booted(1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
            head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 413 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nserver:" not in head
    finally:
        server.stop()


def test_access_log_format_session(example_server) -> None:
    """The --access-log-format command of the access-log page, and the line it shows."""
    blocks = fences((DOCS / "reference" / "access-log.md").read_text())
    index = next(i for i, (lang, body) in enumerate(blocks)
                 if lang == "sh" and "--access-log-format" in body)
    command, sample = blocks[index][1].strip(), blocks[index + 1][1].strip()
    server = example_server(*shlex.split(command)[1:], "--port", "0")
    response = httpx.get(server.url("/?q=1"), headers={"user-agent": "curl/8.5.0"}, timeout=5)
    assert response.status_code == 200
    expected = re.escape(sample).replace("142us", r"\d+us")
    assert server.wait_for_log(f"^{expected}$", "stdout", 5), server.lines("stdout")


def test_json_logging_example():
    """docs/examples/logging.json: every line on stdout is a JSON object."""
    config = EXAMPLES / "logging.json"
    proc = Proc("tests.apps:app", "--port", "0", "--log-config", str(config))
    proc.start(wait=False)
    try:
        line = proc.wait_for_log(r'"message": "Palfrey running on http://127\.0\.0\.1:(\d+)',
                                 "stdout", 15, check_alive=True)
        assert line, proc.stderr_text() + proc.stdout_text()
        port = int(line.group(1))
        httpx.get(f"http://127.0.0.1:{port}/?json=1", timeout=5)
        assert proc.wait_for_log(r"json=1", "stdout", 5)
    finally:
        proc.stop()
    records = [json.loads(line) for line in proc.lines("stdout") if line.strip()]
    access = [r for r in records if r["logger"] == "palfrey.access"]
    assert access and access[-1]["path"] == "/?json=1" and access[-1]["status"] == 200
    assert {r["level"] for r in records} <= {"INFO", "WARNING", "ERROR"}
