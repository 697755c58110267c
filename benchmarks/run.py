"""Palfrey's side-by-side benchmark: Palfrey vs Uvicorn, Granian, Hypercorn and an nginx ceiling.

    python -m benchmarks                   # full run: 3 rounds x 10 s per scenario and server
    python -m benchmarks --quick           # smoke test: 1 round x 3 s, output under results/quick/
    python -m benchmarks --servers palfrey,uvicorn --scenarios hello,post --rounds 5

Method (see README "Benchmarks"): each server runs alone, one worker, on 127.0.0.1, pinned to
one core with wrk (-t1) pinned to the other. Servers are interleaved A B C, A B C, ... over
the rounds, each start followed by a correctness check and an unrecorded warm-up per scenario.
Per (scenario, server) the report gives the median over rounds, the min-max spread, p99
latency, server CPU per request, and the ratio to the baseline (uvicorn) paired by round.
Runs whose spread exceeds 15 %, where wrk used ~all of its core (the load generator, not the
server, was the bottleneck), or with wrk errors / non-2xx answers are flagged.
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
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procstat, servers
from benchmarks.servers import SERVERS, RunningServer

HERE = Path(__file__).resolve().parent
LUA_DIR = HERE / "lua"
RESULTS = HERE / "results"

SPREAD_LIMIT = 0.15  # flag a (scenario, server) whose (max - min) / median exceeds this
WRK_BOUND = 0.90  # flag a run where wrk used this fraction of its core or more
NOISE_LIMIT = 0.20  # flag when other work took this share of the server's core


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    script: str
    description: str
    in_flight: int = 0  # > 0: a WebSocket echo scenario, run by benchmarks/wsclient.py

    @property
    def websocket(self) -> bool:
        return self.in_flight > 0

    def script_args(self, opts: argparse.Namespace) -> list[str]:
        if self.name == "pipelined":
            return [str(opts.pipeline_depth)]
        if self.name == "post":
            return [str(opts.post_size)]
        return []


SCENARIOS: dict[str, Scenario] = {
    "hello": Scenario("hello", "/", "hello.lua", "keep-alive GET /, 13-byte body"),
    "pipelined": Scenario("pipelined", "/", "pipeline.lua", "GET / pipelined, 16 per write"),
    "post": Scenario("post", "/echo", "post.lua", "POST 16 KiB to /echo, echoed back"),
    "stream": Scenario("stream", "/stream", "stream.lua", "GET /stream: 100 x 1 KiB chunks"),
    # Scenario (v): WebSocket echo, 16-byte text messages on 16 connections (wrk cannot
    # speak WebSocket: benchmarks/wsclient.py, pinned like wrk; its "req/s" are messages/s).
    "ws-echo-1": Scenario("ws-echo-1", "/ws", "", "WebSocket echo, 16 conns, 1 message in flight each",
                          in_flight=1),
    "ws-echo-8": Scenario("ws-echo-8", "/ws", "", "WebSocket echo, 16 conns, 8 messages in flight each",
                          in_flight=8),
}
WS_CONNECTIONS = 16


# -- running wrk ------------------------------------------------------------------------------------


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).split()[1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def run_load(scenario: Scenario, port: int, opts: argparse.Namespace, duration: int,
             server_pid: int, tmp: Path) -> dict:
    if scenario.websocket:
        return run_wrk(scenario, port, opts, duration, server_pid, tmp, argv=[
            sys.executable, "-m", "benchmarks.wsclient", "--port", str(port), "--path", scenario.path,
            "-c", str(WS_CONNECTIONS), "-k", str(scenario.in_flight), "-d", str(duration)])
    return run_wrk(scenario, port, opts, duration, server_pid, tmp)


def ws_result(text: str) -> dict | None:
    """benchmarks/wsclient.py's last line, in the shape of wrk's report (no latencies)."""
    lines = [line for line in text.splitlines() if line.startswith("WS_JSON ")]
    if not lines:
        return None
    result = json.loads(lines[-1][len("WS_JSON "):])
    result["requests"] = result["messages"]
    result["latency_us"] = {"p50": 0.0, "p99": 0.0}  # not measured: the client stays cheap
    return result


def run_wrk(
    scenario: Scenario,
    port: int,
    opts: argparse.Namespace,
    duration: int,
    server_pid: int,
    tmp: Path,
    argv: list[str] | None = None,
) -> dict:
    """One wrk run (or `argv`: the WebSocket client) against the server on `port`; returns
    wrk's numbers plus CPU and RSS."""
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
    text = out_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("WRK_JSON ")]
    result = ws_result(text) if scenario.websocket else (
        json.loads(lines[-1][len("WRK_JSON "):]) if lines else None)
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
    return result


# -- the run ---------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


def problem_lines(text: str) -> list[str]:
    """Lines of a server log that show trouble (a clean benchmark run logs nothing)."""
    keys = ("Traceback", "ERROR", "Error", "Exception", "WARNING", "CRITICAL", "[error]", "[crit]")
    return [line for line in text.splitlines() if any(k in line for k in keys)]


def run_benchmarks(opts: argparse.Namespace, server_names: list[str], scenario_names: list[str]) -> dict:
    runs: list[dict] = []
    starts: dict[str, list[dict]] = {name: [] for name in server_names}
    failures: list[str] = []
    pin = opts.server_cpu
    for rnd in range(1, opts.rounds + 1):
        for name in server_names:
            spec = SERVERS[name]
            wanted = [s for s in scenario_names if spec.scenarios is None or s in spec.scenarios]
            if not wanted:
                continue
            log(f"[round {rnd}/{opts.rounds}] {name}: starting")
            with tempfile.TemporaryDirectory(prefix=f"palfrey-bench-{name}-") as tmpdir:
                tmp = Path(tmpdir)
                try:
                    server = RunningServer(spec, pin, tmp, opts.startup_timeout)
                except RuntimeError as exc:
                    failures.append(f"round {rnd}, {name}: {exc}")
                    log(f"  FAILED to start: {exc}")
                    continue
                with server:
                    time.sleep(0.5)  # let it settle before the idle RSS reading
                    start = {
                        "round": rnd,
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
                            if opts.warmup > 0:
                                run_load(scenario, server.port, opts, opts.warmup, server.pid, tmp)
                            result = run_load(scenario, server.port, opts, opts.duration, server.pid, tmp)
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
                        log(f"  {sname:<9} {result['rps']:>10,.0f} req/s  p99 "
                            f"{result['latency_us']['p99'] / 1000:6.2f} ms  server CPU "
                            f"{result['server_cpu_util'] * 100:3.0f}%  wrk CPU "
                            f"{result['wrk_cpu'] * 100:3.0f}%"
                            + (f"  other on server core {result['other_on_server_core'] * 100:3.0f}%"
                               if result["other_on_server_core"] is not None else "")
                            + (f"  ERRORS {errs}" if errs else ""))
                    problems = problem_lines(server.log_text())
                    start["log_problems"] = len(problems)
                    start["log_sample"] = problems[:5]
                    if problems:
                        log(f"  server logged {len(problems)} problem line(s), e.g. {problems[0]!r}")
    return {"runs": runs, "starts": starts, "failures": failures}


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


# -- report ---------------------------------------------------------------------------------------


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    meta, opts = report["meta"], report["options"]
    base = opts["baseline"]
    out = [
        f"# Benchmark {meta['date']} on {meta['machine']['host']}",
        "",
        f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores, Linux {meta['machine']['kernel']}, "
        f"Python {meta['machine']['python']}, wrk {meta['machine']['wrk']}; load average "
        f"{meta['machine']['loadavg_at_start']:.2f} at start. "
        + (f"Server pinned to CPU {opts['server_cpu']}, wrk (-t1) to CPU {opts['client_cpu']}. "
           if opts["server_cpu"] is not None else "Not pinned. ")
        + f"{opts['connections']} connections, {opts['rounds']} round(s) x {opts['duration']} s per "
        f"scenario (after a {opts['warmup']} s warm-up), servers interleaved per round. "
        f"Median over rounds; x{base} = paired ratio to {base}, median of the per-round ratios.",
        "",
        f"| scenario | server | req/s (median) | min - max | x{base} | per round | p99 ms | "
        "CPU us/req | server CPU | wrk CPU | other load | RSS MiB | flags |",
        "|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for sname, by_server in report["summary"]["scenarios"].items():
        for name, s in by_server.items():
            out.append(
                f"| {sname} | {name} | {s['rps_median']:,.0f} | {s['rps_min']:,.0f} - {s['rps_max']:,.0f} "
                f"| {fmt_ratio(s['ratio_median'])} | {' '.join(f'{x:.2f}' for x in s['ratio_per_round'])} "
                f"| {s['p99_ms_median']:.2f} | "
                f"{'-' if s['server_cpu_us_per_req'] is None else format(s['server_cpu_us_per_req'], '.1f')} "
                f"| {s['server_cpu_util'] * 100:.0f}% | {s['wrk_cpu_max'] * 100:.0f}% "
                f"| {'-' if s['other_on_server_core'] is None else format(s['other_on_server_core'] * 100, '.0f') + '%'} "
                f"| {s['rss_loaded_mib']:.1f} | {'; '.join(s['flags'])} |"
            )
    out += [
        "",
        "| server | version | config | startup ms (median) | idle RSS MiB | processes | log problems |",
        "|---|---|---|--:|--:|--:|--:|",
    ]
    for name, s in report["summary"]["servers"].items():
        out.append(
            f"| {name} | {s['version']} | {s['note']} | {s['startup_ms_median']:.0f} | "
            f"{s['idle_rss_mib_median']:.1f} | {s['processes']} | {s['log_problems']} |"
        )
    micro = report.get("micro")
    if micro and micro.get("cases"):
        out += ["", "Parser micro-benchmark (in-process, one core, ns per request, median of "
                f"{micro['repeats']} repeats):", "", "| request | " + " | ".join(micro["columns"]) + " |",
                "|---|" + "--:|" * len(micro["columns"])]
        for case, row in micro["cases"].items():
            out.append(f"| {case} | " + " | ".join(
                "-" if row.get(c) is None else f"{row[c]:,.0f}" for c in micro["columns"]) + " |")
        out += ["", micro["note"]]
    notes = []
    for f in report["failures"]:
        notes.append(f"- FAILURE: {f.splitlines()[0]}")
    for name, s in report["summary"]["servers"].items():
        if s["log_problems"]:
            notes.append(f"- {name} logged {s['log_problems']} problem line(s), e.g. `{s['log_sample'][0][:160]}`")
    for name, why in report["skipped"].items():
        notes.append(f"- {name} skipped: {why}")
    if notes:
        out += ["", "Notes:", "", *notes]
    out += [
        "",
        "Columns: CPU us/req = server CPU time (user+sys, whole process tree, /proc) per response; "
        "server CPU = the same as a share of one core (median); wrk CPU = the load generator's CPU "
        "as a share of its core, worst round (>= 90% flags `wrk-bound`: the client, not the "
        "server, limits the rate); other load = share of the server's core busy with anything "
        "but the server (other processes, loopback softirqs; > 20% flags `noisy core`); RSS = "
        "peak VmRSS of the server tree under load; p99 as wrk computes it (its histogram "
        "includes wrk's coordinated-omission correction), for `pipelined` per batch of 16. "
        "`spread` flags (max - min) / median > 15% over the rounds.",
    ]
    return "\n".join(out) + "\n"


def chart(report: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no chart"
    base = report["options"]["baseline"]
    scen = report["summary"]["scenarios"]
    scenario_names = [s for s in scen if any(v["ratio_median"] is not None for v in scen[s].values())]
    server_names = [n for n in report["summary"]["servers"]
                    if any(n in scen[s] and scen[s][n]["ratio_median"] is not None for s in scenario_names)]
    if not scenario_names or not server_names:
        return f"no ratios to {base} to plot"
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    width = 0.8 / len(server_names)
    for i, name in enumerate(server_names):
        xs, ys, lo, hi = [], [], [], []
        for j, sname in enumerate(scenario_names):
            s = scen[sname].get(name)
            if not s or s["ratio_median"] is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(s["ratio_median"])
            lo.append(s["ratio_median"] - min(s["ratio_per_round"]))
            hi.append(max(s["ratio_per_round"]) - s["ratio_median"])
        bars = ax.bar(xs, ys, width, label=name, yerr=[lo, hi], capsize=2)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(scenario_names)), scenario_names)
    ax.set_ylabel(f"throughput / {base} (paired, median)")
    meta = report["meta"]
    ax.set_title(f"req/s relative to {base}, {report['options']['rounds']} round(s), "
                 f"{meta['machine']['cores']} cores, {meta['date']}", fontsize=9)
    ax.legend(fontsize=8, ncols=min(5, len(server_names)))
    ax.margins(y=0.15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(SERVERS), help="comma list (default: %(default)s)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per measured run (default 10, quick 3)")
    p.add_argument("--warmup", type=int, default=None,
                   help="seconds of unrecorded warm-up per scenario (default 2, quick 1)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--pipeline-depth", type=int, default=16)
    p.add_argument("--post-size", type=int, default=16384)
    p.add_argument("--baseline", default="uvicorn", help="ratios are to this server (default uvicorn)")
    p.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c), default 0")
    p.add_argument("--client-cpu", default="1", help="CPU list for wrk (taskset -c), default 1")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument("--quick", action="store_true",
                   help="1 round x 3 s, 1 s warm-up; results go to results/quick/ (not committed)")
    p.add_argument("--no-micro", action="store_true", help="skip the parser micro-benchmark")
    p.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    opts = p.parse_args(argv)
    for key, full, quick in (("rounds", 3, 1), ("duration", 10, 3), ("warmup", 2, 1)):
        if getattr(opts, key) is None:
            setattr(opts, key, quick if opts.quick else full)
    if opts.out is None:
        opts.out = RESULTS / "quick" if opts.quick else RESULTS
    if opts.rounds < 1 or opts.duration < 1 or opts.warmup < 0 or opts.connections < 1:
        p.error("--rounds, --duration and --connections must be >= 1, --warmup >= 0")
    for flag, names, known in (("--servers", opts.servers, SERVERS), ("--scenarios", opts.scenarios, SCENARIOS)):
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
    if shutil.which("wrk") is None:
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
    scenario_names = [s for s in opts.scenarios.split(",") if s]
    if not server_names:
        log("no server to run")
        return 2
    if opts.baseline not in server_names:
        log(f"baseline {opts.baseline} is not running: no ratios")

    started = dt.datetime.now(dt.timezone.utc)
    try:
        data = run_benchmarks(opts, server_names, scenario_names)
        micro = None if opts.no_micro else run_micro(opts)
    except KeyboardInterrupt:
        log("interrupted: servers stopped, no results written")
        return 130
    finally:
        servers.stop_all()

    report = {
        "meta": {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
                 "elapsed_s": round(time.time() - started.timestamp())},
        "options": {
            "servers": server_names, "scenarios": scenario_names, "rounds": opts.rounds,
            "duration": opts.duration, "warmup": opts.warmup, "connections": opts.connections,
            "pipeline_depth": opts.pipeline_depth, "post_size": opts.post_size,
            "baseline": opts.baseline, "server_cpu": opts.server_cpu, "client_cpu": opts.client_cpu,
            "quick": opts.quick,
        },
        "skipped": skipped,
        "failures": data["failures"],
        "summary": summarize(data, opts, server_names, scenario_names),
        "micro": micro,
        # Per-run raw numbers, trimmed to what the summary is computed from.
        "runs": [
            {k: r[k] for k in ("round", "server", "scenario", "rps", "requests", "errors",
                               "latency_us", "server_cpu_s", "wrk_cpu", "rss_loaded_kib",
                               "other_on_server_core")}
            for r in data["runs"]
        ],
    }
    for r in report["runs"]:
        r["rps"] = round(r["rps"], 1)
        r["server_cpu_s"] = round(r["server_cpu_s"], 3)
        r["wrk_cpu"] = round(r["wrk_cpu"], 3)
        if r["other_on_server_core"] is not None:
            r["other_on_server_core"] = round(r["other_on_server_core"], 3)
    text = markdown(report)
    print()
    print(text)
    opts.out.mkdir(parents=True, exist_ok=True)
    stem = f"{started.strftime('%Y-%m-%d-%H%M')}-{socket.gethostname()}"
    (opts.out / f"{stem}.md").write_text(text)
    (opts.out / f"{stem}.json").write_text(json.dumps(report, separators=(",", ":")) + "\n")
    log(f"wrote {opts.out / (stem + '.md')} and .json")
    why_not = chart(report, opts.out / "ratios.png")
    log(why_not or f"wrote {opts.out / 'ratios.png'}")
    return 1 if data["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
