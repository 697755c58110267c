"""mkdocs hook: the pages that are generated from the code at build time, so they cannot drift.

A page asks for a generated part with a marker on a line of its own::

    <!-- palfrey:cli-options -->

and the hook replaces it (an unknown marker fails the build). The parts:

  cli-options      every option of the ``palfrey`` command, by --help group (palfrey.cli)
  h2-options       the same rows for --http2 and the --h2-* options (the HTTP/2 guide)
  env-vars         every PALFREY_* variable, plus the other variables src/palfrey reads
  config-params    every ``Config`` parameter: default, type, CLI option, meaning
  uvicorn-cli      the CLI compared with Uvicorn 0.54's (same, differs, Palfrey-only)
  uvicorn-config   ``Config`` compared with Uvicorn 0.54's
  bench-http, bench-ws   the newest committed benchmark reports (benchmarks/results/)
  capacity         per-request CPU and memory figures from those reports

The benchmark chart (benchmarks/results/ratios.png) is copied into the site as
``benchmarks/ratios.png``. tests/test_docs.py imports this module to check the same tables.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "palfrey"
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"^<!-- palfrey:([a-z0-9-]+) -->$", re.MULTILINE)

# Config parameters that no CLI option sets: their meaning is said here (a parameter with
# neither a CLI option nor an entry here fails the build).
CONFIG_ONLY = {
    "callback_notify": "An async callable the server awaits from its main loop every "
    "`timeout_notify` seconds (Uvicorn's hook for process managers).",
    "timeout_notify": "Seconds between two `callback_notify` calls.",
    "ssl_context_factory": "`(config, default_factory) -> ssl.SSLContext`: build the TLS "
    "context yourself; `default_factory()` returns the one the `ssl_*` options describe.",
}

# Environment variables src/palfrey reads by name (found in the code; one missing here
# fails the build).
ENVIRONMENT = {
    "WEB_CONCURRENCY": "Default of `--workers` when the option is not given.",
    "FORWARDED_ALLOW_IPS": "Default of `--forwarded-allow-ips` when the option is not given "
    "(else `127.0.0.1,::1`).",
}


# -- the command line -------------------------------------------------------------------------


def cli_command() -> Any:
    import typer.main

    from palfrey import cli

    return typer.main.get_command(cli.cli)


def cli_params() -> list[Any]:
    """The click parameters of ``palfrey``, --help and --version included."""
    return list(cli_command().params)


def option_flags(param: Any) -> str:
    flags = " / ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])
    if param.param_type_name == "argument":
        return f"`{param.human_readable_name}` (argument)"
    metavar = _metavar(param)
    return f"{flags} {metavar}".rstrip()


def _metavar(param: Any) -> str:
    if getattr(param, "is_flag", False) or param.param_type_name == "argument":
        return ""
    if param.metavar:
        return f"`{param.metavar}`"
    name = (getattr(param.type, "name", "") or "value").replace(" range", "")
    return f"`{name.upper()}`"


def show_default(value: Any) -> str:
    if value is None or repr(value) == "Sentinel.UNSET":
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, enum.Enum):
        return f"`{type(value).__module__}.{value.name}` ({int(value)})"
    if isinstance(value, dict):
        return "`palfrey.logging.LOGGING_CONFIG`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def cli_options_markdown() -> str:
    from palfrey.cli import GROUPS, OTHER

    groups: dict[str, list[Any]] = {}
    for param in cli_params():
        if param.param_type_name == "argument":
            group = "Arguments"
        else:
            group = getattr(param, "rich_help_panel", None) or OTHER
        groups.setdefault(group, []).append(param)
    order = ["Arguments", *GROUPS]
    out = []
    for group in sorted(groups, key=lambda g: order.index(g) if g in order else 99):
        out += [f"### {group}", "", *_option_table(groups[group]), ""]
    out.append("`-h` / `--help` shows the same list, grouped the same way.")
    return "\n".join(out)


def _option_table(params: list[Any]) -> list[str]:
    """The rows of an option table (option, default, environment, meaning)."""
    rows = ["| option | default | environment | meaning |", "|---|---|---|---|"]
    for param in params:
        envvar = param.envvar
        if param.name == "headers":
            envvar = "PALFREY_HEADER"  # read by cli.py itself: one Name:Value per line
        env = f"`{envvar}`" if envvar else ""
        default = "" if param.name in ("help", "version") else show_default(param.default)
        rows.append(f"| {option_flags(param)} | {default} | {env} | {_cell(param.help or '')} |")
    return rows


def h2_options_markdown() -> str:
    """--http2 and the --h2-* options (the HTTP/2 guide)."""
    params = [p for p in cli_params() if p.name == "http2" or p.name.startswith("h2_")]
    return "\n".join(_option_table(params))


# -- the environment --------------------------------------------------------------------------


def environment_read_by_source() -> set[str]:
    """Names of environment variables the package reads by a literal name."""
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            # os.environ.get("X"), os.environ["X"], "X" in os.environ
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
                arg = node.args[0] if node.args else None
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                arg = node.slice
            elif isinstance(node, ast.Compare) and any(
                ast.unparse(c) == "os.environ" for c in node.comparators
            ):
                arg = node.left
            else:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


def env_vars_markdown() -> str:
    from palfrey.cli import ENV_PREFIX

    missing = environment_read_by_source() - set(ENVIRONMENT)
    if missing:
        raise ValueError(f"environment variables read by src/palfrey but not described: {missing}")
    rows = ["| variable | same as | notes |", "|---|---|---|"]
    for param in cli_params():
        if param.name == "headers":
            rows.append(f"| `{ENV_PREFIX}HEADER` | {option_flags(param)} | one `Name:Value` per line |")
            continue
        if not param.envvar:
            continue
        note = ""
        if getattr(param, "secondary_opts", None) or getattr(param, "is_flag", False):
            note = "`true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`)"
        elif getattr(param, "multiple", False):
            note = "several values separated by spaces"
        rows.append(f"| `{param.envvar}` | {option_flags(param)} | {note} |")
    rows.append("")
    rows += ["| variable | read by | meaning |", "|---|---|---|"]
    for name in sorted(ENVIRONMENT):
        rows.append(f"| `{name}` | `palfrey.config` | {ENVIRONMENT[name]} |")
    return "\n".join(rows)


# -- Config -----------------------------------------------------------------------------------


def config_parameters() -> dict[str, inspect.Parameter]:
    from palfrey.config import Config

    params = dict(inspect.signature(Config.__init__).parameters)
    params.pop("self")
    return params


def config_params_markdown() -> str:
    by_name = {param.name: param for param in cli_params()}
    rows = ["| parameter | default | type | CLI | meaning |", "|---|---|---|---|---|"]
    for name, param in config_parameters().items():
        option = by_name.get(name)
        if option is not None:
            meaning = option.help or ""
            flag = option_flags(option)
        elif name in CONFIG_ONLY:
            meaning, flag = CONFIG_ONLY[name], ""
        else:
            raise ValueError(f"Config parameter {name!r} has no CLI option and no description")
        default = "required" if param.default is inspect.Parameter.empty else show_default(param.default)
        kind = _cell(str(param.annotation)) if param.annotation is not inspect.Parameter.empty else ""
        rows.append(f"| `{name}` | {default} | `{kind}` | {flag} | {_cell(meaning)} |")
    return "\n".join(rows)


# -- Uvicorn, compared ------------------------------------------------------------------------


def _uvicorn_command() -> Any:
    return importlib.import_module("uvicorn.main").main


def uvicorn_cli_markdown() -> str:
    import uvicorn

    ours = {flag: param for param in cli_params() for flag in [*param.opts, *param.secondary_opts]}
    theirs = {
        flag: param
        for param in _uvicorn_command().params
        for flag in [*param.opts, *param.secondary_opts]
    }
    same, differs = [], []
    for flag, param in theirs.items():
        if not flag.startswith("-") or flag in ("--help", "--version"):
            continue
        mine = ours.get(flag)
        if mine is None:
            differs.append(f"| `{flag}` | missing in Palfrey | |")
        elif flag == mine.opts[0] and show_default(param.default) != show_default(mine.default):
            differs.append(
                f"| `{flag}` | {show_default(param.default)} | {show_default(mine.default)} |"
            )
        elif flag == mine.opts[0]:
            same.append(f"`{flag}`")
    only = [
        f"| {option_flags(param)} | {show_default(param.default)} | {_cell(param.help or '')} |"
        for param in cli_params()
        if param.param_type_name == "option"
        and not any(flag in theirs for flag in param.opts)
    ]
    out = [
        f"**Same flag, same default as Uvicorn {uvicorn.__version__}** ({len(same)}): "
        + ", ".join(sorted(same)),
        "",
        "**Same flag, different default:**",
        "",
    ]
    if differs:
        out += ["| flag | Uvicorn | Palfrey |", "|---|---|---|", *differs]
    else:
        out.append("none.")
    out += ["", "**Palfrey-only options:**", "", "| option | default | meaning |", "|---|---|---|", *only]
    return "\n".join(out)


def uvicorn_config_markdown() -> str:
    import uvicorn
    from uvicorn.config import Config as UvicornConfig

    theirs = dict(inspect.signature(UvicornConfig.__init__).parameters)
    theirs.pop("self")
    ours = config_parameters()
    same = [name for name in theirs if name in ours and _same_default(theirs[name], ours[name])]
    differs = [
        f"| `{name}` | {show_default(theirs[name].default)} | {show_default(ours[name].default)} |"
        for name in theirs
        if name in ours and not _same_default(theirs[name], ours[name])
    ]
    missing = [name for name in theirs if name not in ours]
    only = [f"`{name}`" for name in ours if name not in theirs]
    out = [
        f"**Same parameter, same default as `uvicorn.Config` {uvicorn.__version__}** "
        f"({len(same)}): " + ", ".join(f"`{n}`" for n in same),
        "",
        "**Same parameter, different default:**",
        "",
        "| parameter | Uvicorn | Palfrey |",
        "|---|---|---|",
        *differs,
        "",
        "**Missing in Palfrey:** " + (", ".join(f"`{n}`" for n in missing) or "none."),
        "",
        "**Palfrey-only parameters:** " + ", ".join(only),
    ]
    return "\n".join(out)


def _same_default(a: inspect.Parameter, b: inspect.Parameter) -> bool:
    if isinstance(a.default, dict) and isinstance(b.default, dict):
        return False  # the logging dicts: the same shape, other logger names
    return a.default == b.default


# -- benchmarks -------------------------------------------------------------------------------


def latest_result(scenario: str) -> tuple[Path, dict[str, Any]]:
    """The newest committed (not --quick) run that measured ``scenario`` under ``palfrey``
    (an --ab run names its builds palfrey@A and palfrey@B instead)."""
    found = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        servers = data["summary"]["scenarios"].get(scenario, {})
        if not data["options"].get("quick") and "palfrey" in servers:
            found.append((path, data))
    if not found:
        raise ValueError(f"no committed benchmark result measures {scenario!r}")
    return found[-1]


def bench_report_markdown(scenario: str) -> str:
    path, _ = latest_result(scenario)
    text = path.with_suffix(".md").read_text()
    # The report's own headings sit below the page's.
    text = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.MULTILINE)
    return f"From `benchmarks/results/{path.with_suffix('.md').name}`, as committed:\n\n{text}"


SCENARIO_NAMES = {
    "hello": "GET, 13-byte body, keep-alive",
    "pipelined": "the same, 16 pipelined",
    "post": "POST 16 KiB, echoed",
    "stream": "100 x 1 KiB chunks",
    "ws-echo-1": "WebSocket echo, 1 message in flight",
    "ws-echo-8": "WebSocket echo, 8 messages in flight",
}


def capacity_markdown() -> str:
    rows = [
        "| scenario | Palfrey CPU per request | requests/s one core can serve | Uvicorn CPU per request | Palfrey RSS under load |",
        "|---|--:|--:|--:|--:|",
    ]
    sources = []
    for scenario, label in SCENARIO_NAMES.items():
        path, data = latest_result(scenario)
        servers = data["summary"]["scenarios"][scenario]
        ours, theirs = servers["palfrey"], servers.get("uvicorn", {})
        cpu = ours["server_cpu_us_per_req"]
        rows.append(
            f"| {label} | {cpu:.1f} µs | {1e6 / cpu:,.0f} | "
            f"{theirs.get('server_cpu_us_per_req', float('nan')):.1f} µs | "
            f"{ours['rss_loaded_mib']:.1f} MiB |"
        )
        if path.name not in sources:
            sources.append(path.name)
    rows.append("")
    rows.append(
        "Measured with the app in `benchmarks/app.py` (it does almost nothing), one worker "
        "pinned to one core, access log off; from "
        + ", ".join(f"`benchmarks/results/{name}`" for name in sources)
        + ". For WebSocket rows, a request is one message."
    )
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "cli-options": cli_options_markdown,
    "h2-options": h2_options_markdown,
    "env-vars": env_vars_markdown,
    "config-params": config_params_markdown,
    "uvicorn-cli": uvicorn_cli_markdown,
    "uvicorn-config": uvicorn_config_markdown,
    "bench-http": lambda: bench_report_markdown("hello"),
    "bench-ws": lambda: bench_report_markdown("ws-echo-1"),
    "capacity": capacity_markdown,
}


def render(markdown: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated part <!-- palfrey:{name} -->")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


# -- mkdocs events ----------------------------------------------------------------------------


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return render(markdown)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(
        File.generated(config, "benchmarks/ratios.png", abs_src_path=str(RESULTS / "ratios.png"))
    )
    return files
