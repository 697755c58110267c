"""Palfrey's side-by-side benchmark: Palfrey vs Uvicorn, Granian, Hypercorn and an nginx ceiling.

    python -m benchmarks                      # everything but instruction counts (~40 min)
    python -m benchmarks --instructions       # ... plus instructions per request (valgrind)
    python -m benchmarks --quick              # smoke test: 1 round x 3 s, a few scenarios
    python -m benchmarks --servers palfrey,uvicorn --scenarios hello,post --rounds 5
    python -m benchmarks --instructions-only --scenarios hello,post    # counts alone, ~minutes
    python -m benchmarks --scenarios idle-conns                        # RSS per idle connection
    python -m benchmarks --ab /work/venvs/old /work/venvs/new          # two palfrey builds
    python -m benchmarks --python 3.12=/work/venvs/bench312 --scenarios hello,post

Method (see README "Benchmarks"): each server runs alone, one worker, on 127.0.0.1, pinned to
one core with the load generator (wrk -t1, h2load for HTTP/2, benchmarks/wsclient.py for
WebSocket) pinned to the other. Servers are interleaved A B C, A B C, ... over the rounds,
each start followed by a correctness check and a warm-up per scenario (not recorded for req/s;
perf stat counts the server's syscalls and context switches then). Per (scenario, server)
the report gives the median over rounds, the min-max spread, p99 latency, server CPU per
request, syscalls per request and the ratio to the baseline (uvicorn) paired by round. Runs
whose spread exceeds 15 %, where the client used ~all of its core, or with errors / non-2xx
answers are flagged. Instruction counts (benchmarks/instructions.py) and idle connections
(benchmarks/idle.py) are phases of their own.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import h2load, idle, instructions, perfstat, procstat, servers
from benchmarks.report import chart, markdown
from benchmarks.scenarios import LUA_DIR, SCENARIOS, Scenario
from benchmarks.servers import SERVERS, RunningServer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

SPREAD_LIMIT = 0.15  # flag a (scenario, server) whose (max - min) / median exceeds this
WRK_BOUND = 0.90  # flag a run where wrk used this fraction of its core or more
NOISE_LIMIT = 0.20  # flag when other work took this share of the server's core


# -- running wrk ------------------------------------------------------------------------------------


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).split()[1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def run_load(scenario: Scenario, port: int, opts: argparse.Namespace, duration: int,
             server_pid: int, tmp: Path, count_syscalls: bool = False) -> dict:
    if scenario.websocket or scenario.http2:
        argv = scenario.client_argv(port, tmp, opts, duration=duration)
        return run_wrk(scenario, port, opts, duration, server_pid, tmp, argv=argv,
                       count_syscalls=count_syscalls)
    return run_wrk(scenario, port, opts, duration, server_pid, tmp, count_syscalls=count_syscalls)


def ws_result(text: str) -> dict | None:
    """benchmarks/wsclient.py's last line, in the shape of wrk's report (no latencies)."""
    lines = [line for line in text.splitlines() if line.startswith("WS_JSON ")]
    if not lines:
        return None
    result = json.loads(lines[-1][len("WS_JSON "):])
    result["requests"] = result["messages"]
    result["latency_us"] = {"p50": 0.0, "p99": 0.0}  # not measured: the client stays cheap
    return result


def h2load_result(text: str) -> dict | None:
    """h2load's report in the shape of wrk's (mean latency only: h2load gives no percentiles)."""
    try:
        r = h2load.parse(text)
    except ValueError:
        return None
    non_2xx = r["status"]["3xx"] + r["status"]["4xx"] + r["status"]["5xx"]
    mean = r["mean_request_us"] or 0.0
    return {"duration_us": r["duration_us"], "requests": r["requests"], "bytes": r["data_bytes"],
            "errors": {"connect": 0, "read": r["errored"], "write": 0, "status": non_2xx,
                       "timeout": r["timeout"], "failed": r["failed"] - non_2xx},
            "latency_us": {"p50": 0.0, "p99": 0.0, "mean": mean}}


def run_wrk(
    scenario: Scenario,
    port: int,
    opts: argparse.Namespace,
    duration: int,
    server_pid: int,
    tmp: Path,
    argv: list[str] | None = None,
    count_syscalls: bool = False,
) -> dict:
    """One wrk run (or `argv`: the WebSocket client, h2load) against the server on `port`;
    returns wrk's numbers plus CPU and RSS, and with `count_syscalls` the server tree's
    syscalls and context switches (perf stat) over the run."""
    argv = argv or [
        "wrk", "-t1", f"-c{opts.connections}", f"-d{duration}s", "--latency", "--timeout", "5s",
        "-s", str(LUA_DIR / scenario.script), f"http://127.0.0.1:{port}{scenario.path}",
        "--", *scenario.script_args(opts),
    ]
    if opts.client_cpu is not None:
        argv = ["taskset", "-c", opts.client_cpu, *argv]
    env = {**os.environ, "LUA_PATH": f"{LUA_DIR}/?.lua;;"}
    out_path = tmp / "wrk.out"
    server_pids = procstat.descendants(server_pid)
    cpu_before = {pid: procstat.cpu_seconds(pid) or 0.0 for pid in server_pids}
    peak_rss = procstat.tree_rss_kib(server_pid)
    core = int(opts.server_cpu) if opts.server_cpu is not None and opts.server_cpu.isdigit() else None
    core_before = procstat.core_busy_seconds(core) if core is not None else None
    counter = perfstat.PerfCounter.start(server_pids) if count_syscalls else None
    with open(out_path, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        servers.LIVE[proc.pid] = proc
        try:
            deadline = started + duration + 30
            while True:
                # WNOWAIT: wrk stays a zombie, so its /proc/PID/stat (CPU times of all its
                # threads) can still be read before it is reaped.
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"wrk did not finish within {duration + 30} s")
                peak_rss = max(peak_rss, procstat.tree_rss_kib(server_pid))
                time.sleep(0.25)
            wall = time.monotonic() - started
            wrk_cpu = procstat.cpu_seconds(proc.pid)
            after_pids = procstat.descendants(server_pid)
            server_cpu = sum(
                (procstat.cpu_seconds(pid) or 0.0) - cpu_before.get(pid, 0.0) for pid in after_pids
            )
            core_after = procstat.core_busy_seconds(core) if core is not None else None
        finally:
            servers.stop_process(proc, grace=3)
            counts = counter.stop() if counter is not None else None
    text = out_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("WRK_JSON ")]
    if scenario.websocket:
        result = ws_result(text)
    elif scenario.http2:
        result = h2load_result(text)
    else:
        result = json.loads(lines[-1][len("WRK_JSON "):]) if lines else None
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"load generator failed (exit {proc.returncode}):\n{text[-2000:]}")
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds if seconds else 0.0
    result["wrk_cpu"] = (wrk_cpu or 0.0) / wall  # fraction of one core
    result["server_cpu_s"] = server_cpu
    result["server_cpu_util"] = server_cpu / seconds if seconds else 0.0
    result["server_cpu_us_per_req"] = server_cpu / result["requests"] * 1e6 if result["requests"] else None
    result["rss_loaded_kib"] = peak_rss
    # Share of the server's core busy with something other than the server (noise).
    result["other_on_server_core"] = (
        max(0.0, (core_after - core_before - server_cpu) / wall)
        if core_before is not None and core_after is not None else None
    )
    result["socket_errors"] = sum(v for k, v in result["errors"].items() if k != "status")
    if counts and result["requests"]:
        result["syscalls_per_req"] = counts["syscalls"] / result["requests"]
        result["ctx_switches_per_req"] = counts["context_switches"] / result["requests"]
    return result


# -- the run ---------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


def problem_lines(text: str) -> list[str]:
    """Lines of a server log that show trouble (a clean benchmark run logs nothing)."""
    keys = ("Traceback", "ERROR", "Error", "Exception", "WARNING", "CRITICAL", "[error]", "[crit]")
    return [line for line in text.splitlines() if any(k in line for k in keys)]


def run_benchmarks(opts: argparse.Namespace, server_names: list[str], scenario_names: list[str]) -> dict:
    """The throughput rounds: per round, per server, one start per scenario group (app and
    protocol), each checked, warmed up (syscalls counted then) and measured."""
    runs: list[dict] = []
    starts: dict[str, list[dict]] = {name: [] for name in server_names}
    failures: list[str] = []
    refused: dict[str, str] = {}
    pin = opts.server_cpu
    for rnd in range(1, opts.rounds + 1):
        for name in server_names:
            spec = SERVERS[name]
            groups: dict[tuple[str, bool], list[str]] = {}
            for s in scenario_names:
                if s in SCENARIOS and spec.serves(SCENARIOS[s]):
                    groups.setdefault(SCENARIOS[s].group, []).append(s)
            for (app, http2), wanted in groups.items():
                if (name, app, http2) in refused:
                    continue
                log(f"[round {rnd}/{opts.rounds}] {name}: starting"
                    + ("" if app == servers.APP else f" ({app.split(':')[0].rsplit('.', 1)[-1]})")
                    + (" HTTP/2" if http2 else ""))
                run_group(opts, rnd, name, spec, app, http2, wanted, pin, runs, starts, failures,
                          refused)
    return {"runs": runs, "starts": starts, "failures": failures,
            "refused": {f"{name} (HTTP/2)" if http2 else name: why
                        for (name, app, http2), why in refused.items()}}


def run_group(opts, rnd, name, spec, app, http2, wanted, pin, runs, starts, failures, refused) -> None:
    with tempfile.TemporaryDirectory(prefix=f"palfrey-bench-{name}-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            server = RunningServer(spec, pin, tmp, opts.startup_timeout, app=app, http2=http2)
        except RuntimeError as exc:
            if http2 and "not supported" in str(exc):
                # Palfrey before HTTP/2: skipped with its own message, not a failure.
                refused[(name, app, http2)] = instructions._refusal(str(exc))
                log(f"  skipped: {refused[(name, app, http2)]}")
            else:
                failures.append(f"round {rnd}, {name}: {exc}")
                log(f"  FAILED to start: {exc}")
            return
        with server:
            time.sleep(0.5)  # let it settle before the idle RSS reading
            start = {
                "round": rnd,
                "app": app,
                "startup_s": server.startup_s,
                "idle_rss_kib": procstat.tree_rss_kib(server.pid),
                "processes": len(procstat.descendants(server.pid)),
            }
            starts[name].append(start)
            log(f"  up in {server.startup_s * 1000:.0f} ms, idle RSS "
                f"{start['idle_rss_kib'] / 1024:.1f} MiB ({start['processes']} processes)")
            for sname in wanted:
                scenario = SCENARIOS[sname]
                wrong = servers.verify(server.port, sname)
                if wrong:
                    failures.append(f"round {rnd}, {name}, {sname}: wrong response: {wrong}")
                    log(f"  {sname}: WRONG RESPONSE, skipped: {wrong}")
                    continue
                try:
                    counts = {}
                    if opts.warmup > 0 or opts.syscalls:
                        # The warm-up run (unrecorded for req/s) is where perf counts
                        # syscalls: its tracepoints cost the server a little.
                        warm = run_load(scenario, server.port, opts, max(opts.warmup, 1),
                                        server.pid, tmp, count_syscalls=opts.syscalls)
                        counts = {k: warm[k] for k in ("syscalls_per_req", "ctx_switches_per_req")
                                  if k in warm}
                    result = run_load(scenario, server.port, opts, opts.duration, server.pid, tmp)
                    result.update(counts)
                except RuntimeError as exc:
                    failures.append(f"round {rnd}, {name}, {sname}: {exc}")
                    log(f"  {sname}: FAILED: {exc}")
                    continue
                if server.proc.poll() is not None:
                    failures.append(f"round {rnd}, {name}, {sname}: server exited "
                                    f"({server.proc.returncode})")
                result.update(round=rnd, server=name, scenario=sname)
                runs.append(result)
                errs = {k: v for k, v in result["errors"].items() if v}
                log(f"  {sname:<14} {result['rps']:>10,.0f} req/s  p99 "
                    f"{result['latency_us']['p99'] / 1000:6.2f} ms  CPU "
                    f"{result['server_cpu_us_per_req'] or 0:5.1f} us/req"
                    + (f"  {result['syscalls_per_req']:.2f} syscalls/req"
                       if "syscalls_per_req" in result else "")
                    + f"  server CPU {result['server_cpu_util'] * 100:3.0f}%  client CPU "
                    f"{result['wrk_cpu'] * 100:3.0f}%"
                    + (f"  other on server core {result['other_on_server_core'] * 100:3.0f}%"
                       if result["other_on_server_core"] is not None else "")
                    + (f"  ERRORS {errs}" if errs else ""))
            problems = problem_lines(server.log_text())
            start["log_problems"] = len(problems)
            start["log_sample"] = problems[:5]
            if problems:
                log(f"  server logged {len(problems)} problem line(s), e.g. {problems[0]!r}")


# -- summary ---------------------------------------------------------------------------------------


def summarize(data: dict, opts: argparse.Namespace, server_names: list[str], scenario_names: list[str]) -> dict:
    baseline = opts.baseline
    by_key: dict[tuple[str, str], dict[int, dict]] = {}
    for run in data["runs"]:
        by_key.setdefault((run["scenario"], run["server"]), {})[run["round"]] = run
    summary: dict[str, dict[str, dict]] = {}
    for sname in scenario_names:
        base_runs = by_key.get((sname, baseline), {})
        for name in server_names:
            rounds = by_key.get((sname, name))
            if not rounds:
                continue
            rps = [rounds[r]["rps"] for r in sorted(rounds)]
            median = statistics.median(rps)
            spread = (max(rps) - min(rps)) / median if median else 0.0
            ratios = [
                rounds[r]["rps"] / base_runs[r]["rps"]
                for r in sorted(rounds)
                if r in base_runs and base_runs[r]["rps"]
            ]
            flags = []
            if len(rps) > 1 and spread > SPREAD_LIMIT:
                flags.append(f"spread {spread * 100:.0f}%")
            wrk_cpu = max(rounds[r]["wrk_cpu"] for r in rounds)
            if wrk_cpu >= WRK_BOUND:
                flags.append(f"wrk-bound ({wrk_cpu * 100:.0f}% CPU)")
            errors: dict[str, int] = {}
            for r in rounds.values():
                for k, v in r["errors"].items():
                    if v:
                        errors[k] = errors.get(k, 0) + v
            if errors:
                flags.append("errors " + ", ".join(f"{k} {v}" for k, v in errors.items()))
            others = [rounds[r]["other_on_server_core"] for r in rounds
                      if rounds[r].get("other_on_server_core") is not None]
            other = statistics.median(others) if others else None
            if other is not None and other > NOISE_LIMIT:
                flags.append(f"noisy core ({other * 100:.0f}% other load)")
            cpu_per_req = [rounds[r]["server_cpu_us_per_req"] for r in rounds
                           if rounds[r]["server_cpu_us_per_req"] is not None]
            sys_per_req = [rounds[r]["syscalls_per_req"] for r in rounds if "syscalls_per_req" in rounds[r]]
            cs_per_req = [rounds[r]["ctx_switches_per_req"] for r in rounds
                          if "ctx_switches_per_req" in rounds[r]]
            summary.setdefault(sname, {})[name] = {
                "rounds": len(rps),
                "rps": [round(x, 1) for x in rps],
                "rps_median": round(median, 1),
                "rps_min": round(min(rps), 1),
                "rps_max": round(max(rps), 1),
                "spread": round(spread, 4),
                "ratio_per_round": [round(x, 3) for x in ratios],
                "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
                "p99_ms_median": round(statistics.median(
                    rounds[r]["latency_us"]["p99"] for r in rounds) / 1000, 3),
                "p50_ms_median": round(statistics.median(
                    rounds[r]["latency_us"]["p50"] for r in rounds) / 1000, 3),
                "server_cpu_us_per_req": round(statistics.median(cpu_per_req), 2) if cpu_per_req else None,
                "cpu_us_per_req_rounds": [round(x, 2) for x in cpu_per_req],
                "syscalls_per_req": round(statistics.median(sys_per_req), 3) if sys_per_req else None,
                "ctx_switches_per_req": round(statistics.median(cs_per_req), 4) if cs_per_req else None,
                "server_cpu_util": round(statistics.median(rounds[r]["server_cpu_util"] for r in rounds), 3),
                "wrk_cpu_max": round(wrk_cpu, 3),
                "other_on_server_core": None if other is None else round(other, 3),
                "rss_loaded_mib": round(statistics.median(
                    rounds[r]["rss_loaded_kib"] for r in rounds) / 1024, 1),
                "errors": errors,
                "flags": flags,
            }
    per_server = {}
    for name in server_names:
        starts = data["starts"].get(name) or []
        if not starts:
            continue
        # Idle RSS and startup of the plain app (the framework apps import more).
        starts = [s for s in starts if s.get("app") == servers.APP] or starts
        per_server[name] = {
            "version": SERVERS[name].version(),
            "note": SERVERS[name].note,
            "startup_ms_median": round(statistics.median(s["startup_s"] for s in starts) * 1000, 1),
            "startup_ms": [round(s["startup_s"] * 1000, 1) for s in starts],
            "idle_rss_mib_median": round(statistics.median(s["idle_rss_kib"] for s in starts) / 1024, 1),
            "processes": starts[0]["processes"],
            "log_problems": sum(s.get("log_problems", 0) for s in starts),
            "log_sample": next((s["log_sample"] for s in starts if s.get("log_sample")), []),
        }
    return {"scenarios": summary, "servers": per_server}


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
        "loadavg_at_start": os.getloadavg()[0],
    }


def run_micro(opts: argparse.Namespace) -> dict | None:
    argv = [sys.executable, "-m", "benchmarks.parser_micro", "--json"]
    if opts.quick:
        argv.append("--quick")
    if opts.server_cpu is not None:
        argv = ["taskset", "-c", opts.server_cpu, *argv]
    log("parser micro-benchmark ...")
    proc = subprocess.Popen(argv, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    servers.LIVE[proc.pid] = proc
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        log("  parser micro-benchmark timed out")
        return None
    finally:
        servers.stop_process(proc, grace=2)
    if proc.returncode != 0:
        log(f"  parser micro-benchmark failed:\n{err[-2000:]}")
        return None
    return json.loads(out.strip().splitlines()[-1])


# -- command line ----------------------------------------------------------------------------------

AB_SCENARIOS = "hello,pipelined,post,ws-echo-1"
QUICK_SCENARIOS = "hello,post,ws-echo-1,fastapi-json,static-64k,h2-hello"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=None,
                   help=f"comma list (default: {','.join(n for n in SERVERS if n != 'uvicorn-wsproto')}"
                        ",uvicorn-wsproto; kind@LABEL for a --python variant)")
    p.add_argument("--scenarios", default=None,
                   help=f"comma list of {', '.join([*SCENARIOS, 'idle-conns'])} (default: all; "
                        f"--quick: {QUICK_SCENARIOS})")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per measured run (default 10, quick 3)")
    p.add_argument("--warmup", type=int, default=None,
                   help="seconds of unrecorded warm-up per scenario, where syscalls are counted "
                        "(default 2, quick 1)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--pipeline-depth", type=int, default=16)
    p.add_argument("--post-size", type=int, default=16384)
    p.add_argument("--baseline", default=None, help="ratios are to this server (default uvicorn)")
    p.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c), default 0")
    p.add_argument("--client-cpu", default="1", help="CPU list for wrk (taskset -c), default 1")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument("--quick", action="store_true",
                   help="1 round x 3 s, 1 s warm-up, a few scenarios; results go to results/quick/ "
                        "(not committed)")
    p.add_argument("--no-micro", action="store_true", help="skip the parser micro-benchmark")
    p.add_argument("--no-syscalls", dest="syscalls", action="store_false",
                   help="do not count syscalls with perf stat")
    p.add_argument("--instructions", action="store_true",
                   help="add the instruction-count phase (valgrind; slow: minutes)")
    p.add_argument("--instructions-only", action="store_true",
                   help="only the instruction-count phase (and idle-conns if asked): no req/s rounds")
    p.add_argument("--instr-scale", type=float, default=None,
                   help="scale the phases' request counts N1/N2 (default 1, quick 0.2)")
    p.add_argument("--keep-callgrind", type=Path, default=None, metavar="DIR",
                   help="keep every callgrind dump there (callgrind.SERVER.SCENARIO.phaseK-N.PID.D): "
                        "callgrind_annotate --inclusive=yes FILE shows who calls what")
    p.add_argument("--idle-http", type=int, default=idle.HTTP_CONNECTIONS,
                   help="idle keep-alive connections for idle-conns (default %(default)s)")
    p.add_argument("--idle-ws", type=int, default=idle.WS_CONNECTIONS,
                   help="idle WebSockets for idle-conns (default %(default)s)")
    p.add_argument("--python", action="append", default=[], metavar="LABEL=PATH",
                   help="also run palfrey and uvicorn under this interpreter, virtualenv or palfrey "
                        "source tree, as palfrey@LABEL and uvicorn@LABEL (repeatable)")
    p.add_argument("--ab", nargs=2, metavar=("A", "B"), default=None,
                   help="A/B: two palfrey builds (virtualenvs, interpreters or built source trees) as "
                        f"palfrey@A and palfrey@B in alternating rounds, with instruction counts; "
                        f"scenarios default to {AB_SCENARIOS}, baseline palfrey@A")
    p.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    opts = p.parse_args(argv)
    for key, full, quick in (("rounds", 3, 1), ("duration", 10, 3), ("warmup", 2, 1), ("instr_scale", 1.0, 0.2)):
        if getattr(opts, key) is None:
            setattr(opts, key, quick if opts.quick else full)
    if opts.out is None:
        opts.out = RESULTS / "quick" if opts.quick else RESULTS
    if opts.rounds < 1 or opts.duration < 1 or opts.warmup < 0 or opts.connections < 1:
        p.error("--rounds, --duration and --connections must be >= 1, --warmup >= 0")
    variants: list[str] = []
    try:
        for item in opts.python:
            label, sep, target = item.partition("=")
            if not sep or not label or not target:
                p.error(f"--python {item}: want LABEL=PATH")
            for kind in ("palfrey", "uvicorn"):
                spec = servers.interpreter_variant(kind, label, target)
                SERVERS[spec.name] = spec
                variants.append(spec.name)
        if opts.ab:
            for label, target in zip("AB", opts.ab):
                spec = servers.interpreter_variant("palfrey", label, target)
                SERVERS[spec.name] = spec
    except ValueError as exc:
        p.error(str(exc))
    if opts.ab:
        opts.servers = opts.servers or "palfrey@A,palfrey@B"
        opts.scenarios = opts.scenarios or AB_SCENARIOS
        opts.baseline = opts.baseline or "palfrey@A"
        opts.instructions = True
    if opts.servers is None:
        opts.servers = ",".join([*(n for n in SERVERS if "@" not in n), *variants])
    if opts.scenarios is None:
        opts.scenarios = QUICK_SCENARIOS if opts.quick else ",".join([*SCENARIOS, "idle-conns"])
    opts.baseline = opts.baseline or "uvicorn"
    if opts.instructions_only:
        opts.instructions = True
    for flag, names, known in (("--servers", opts.servers, SERVERS),
                               ("--scenarios", opts.scenarios, [*SCENARIOS, "idle-conns"])):
        unknown = [n for n in names.split(",") if n and n not in known]
        if unknown:
            p.error(f"{flag}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    if opts.no_pin:
        opts.server_cpu = opts.client_cpu = None
    return opts


def _cpu_list(spec: str) -> set[int]:
    """taskset -c syntax, e.g. "1" or "2-3,5"."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    atexit.register(servers.stop_all)
    if shutil.which("wrk") is None and not opts.instructions_only:
        log("wrk is not on PATH (apt-get install wrk): nothing to measure")
        return 2
    if opts.server_cpu is not None:
        if shutil.which("taskset") is None:
            log("taskset is not on PATH: running unpinned")
            opts.server_cpu = opts.client_cpu = None
        elif len(os.sched_getaffinity(0)) < 2:
            log("fewer than 2 usable CPUs: running unpinned (server and wrk will share a core)")
            opts.server_cpu = opts.client_cpu = None
        else:
            # The harness itself (its /proc sampling) stays off the server's core.
            try:
                os.sched_setaffinity(0, _cpu_list(opts.client_cpu))
            except (ValueError, OSError) as exc:
                log(f"could not pin the harness to CPU {opts.client_cpu}: {exc}")
    if opts.syscalls and perfstat.unusable():
        log(f"syscalls not counted: {perfstat.unusable()}")
        opts.syscalls = False

    server_names, skipped = [], {}
    for name in opts.servers.split(","):
        if not name:
            continue
        why = SERVERS[name].missing()
        if why:
            skipped[name] = why
            log(f"skipping {name}: {why}")
        else:
            server_names.append(name)
    wanted = [s for s in opts.scenarios.split(",") if s]
    scenario_names = [s for s in wanted if s in SCENARIOS]
    if any(SCENARIOS[s].http2 for s in scenario_names) and shutil.which("h2load") is None:
        log("h2load is not on PATH (apt-get install nghttp2-client): HTTP/2 scenarios skipped")
        skipped["HTTP/2 scenarios"] = "h2load is not on PATH"
        scenario_names = [s for s in scenario_names if not SCENARIOS[s].http2]
    if not server_names:
        log("no server to run")
        return 2
    if opts.baseline not in server_names:
        log(f"baseline {opts.baseline} is not running: no ratios")

    started = dt.datetime.now(dt.UTC)
    data = {"runs": [], "starts": {}, "failures": [], "refused": {}}
    instr = {"results": {}, "failures": [], "skipped": {}}
    idle_result = None
    try:
        if not opts.instructions_only and scenario_names:
            data = run_benchmarks(opts, server_names, scenario_names)
        if opts.instructions and scenario_names:
            instr = instructions.run_phase(opts, server_names, scenario_names, log)
        if "idle-conns" in wanted:
            idle_result = idle.run_phase(opts, server_names, log)
        micro = None if opts.no_micro or opts.ab or opts.instructions_only else run_micro(opts)
    except KeyboardInterrupt:
        log("interrupted: servers stopped, no results written")
        return 130
    finally:
        servers.stop_all()
    skipped.update(data["refused"])
    if isinstance(instr["skipped"], str):
        skipped["instruction counts"] = instr["skipped"]
    else:
        skipped.update({f"{k}, instruction counts": v for k, v in instr["skipped"].items()})
    failures = data["failures"] + instr["failures"] + (idle_result or {}).get("failures", [])

    report = {
        "meta": {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
                 "elapsed_s": round(time.time() - started.timestamp())},
        "options": {
            "servers": server_names, "scenarios": wanted, "rounds": opts.rounds,
            "duration": opts.duration, "warmup": opts.warmup, "connections": opts.connections,
            "pipeline_depth": opts.pipeline_depth, "post_size": opts.post_size,
            "baseline": opts.baseline, "server_cpu": opts.server_cpu, "client_cpu": opts.client_cpu,
            "quick": opts.quick, "instructions": opts.instructions, "instr_scale": opts.instr_scale,
            "syscalls": opts.syscalls, "python": opts.python, "ab": opts.ab,
        },
        "skipped": skipped,
        "failures": failures,
        "summary": summarize(data, opts, server_names, scenario_names),
        "instructions": instr["results"],
        "idle": idle_result,
        "micro": micro,
        # Per-run raw numbers, trimmed to what the summary is computed from.
        "runs": [
            {k: r.get(k) for k in ("round", "server", "scenario", "rps", "requests", "errors",
                                   "latency_us", "server_cpu_s", "wrk_cpu", "rss_loaded_kib",
                                   "other_on_server_core", "syscalls_per_req", "ctx_switches_per_req")}
            for r in data["runs"]
        ],
    }
    for r in report["runs"]:
        r["rps"] = round(r["rps"], 1)
        r["server_cpu_s"] = round(r["server_cpu_s"], 3)
        r["wrk_cpu"] = round(r["wrk_cpu"], 3)
        for k in ("other_on_server_core", "syscalls_per_req", "ctx_switches_per_req"):
            if r[k] is not None:
                r[k] = round(r[k], 4)
    text = markdown(report)
    print()
    print(text)
    opts.out.mkdir(parents=True, exist_ok=True)
    stem = f"{started.strftime('%Y-%m-%d-%H%M')}-{socket.gethostname()}" + ("-ab" if opts.ab else "")
    (opts.out / f"{stem}.md").write_text(text)
    (opts.out / f"{stem}.json").write_text(json.dumps(report, separators=(",", ":")) + "\n")
    log(f"wrote {opts.out / (stem + '.md')} and .json")
    chart_path = opts.out / ("ab.png" if opts.ab else "ratios.png")
    why_not = chart(report, chart_path)
    log(why_not or f"wrote {chart_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
