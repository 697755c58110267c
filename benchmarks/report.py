"""The benchmark's Markdown report and chart, from the report dict that run.py writes as JSON.

    python -m benchmarks.report results/<stem>.json   # re-render <stem>.md and the chart

When the run was noisy (see noise()), the figures that hold (instructions, syscalls and CPU
per request) come first, in the report and in the chart.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

NOISY_ROWS = 0.25  # noisy: at least this share of throughput rows flagged spread / noisy core
NOISY_OTHER = 0.10  # ... or other work took this share of the server's core (median)
PROFILE_FOR = ("palfrey", "palfrey@A", "palfrey@B")
PROFILE_SCENARIOS = ("hello", "post")


def fmt_ratio(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def noise(report: dict) -> dict:
    """How noisy the throughput rounds were: {"noisy": bool, "why": text}."""
    rows = [s for by in report["summary"]["scenarios"].values() for s in by.values()]
    if not rows:
        return {"noisy": False, "why": "no throughput rounds"}
    flagged = [s for s in rows if any(f.startswith(("spread", "noisy core")) for f in s["flags"])]
    others = [s["other_on_server_core"] for s in rows if s.get("other_on_server_core") is not None]
    other = statistics.median(others) if others else 0.0
    spreads = sorted(s["spread"] for s in rows)
    noisy = len(flagged) >= NOISY_ROWS * len(rows) or other >= NOISY_OTHER
    why = (f"{len(flagged)} of {len(rows)} throughput rows flagged (spread > 15% or other load > 20%); "
           f"req/s spread over rounds median {statistics.median(spreads) * 100:.0f}%, worst "
           f"{spreads[-1] * 100:.0f}%; other work on the server's core median {other * 100:.0f}%; "
           f"load average {report['meta']['machine']['loadavg_at_start']:.2f} at start")
    return {"noisy": noisy, "why": why}


def _throughput(report: dict) -> list[str]:
    base = report["options"]["baseline"]
    out = [
        "## Throughput",
        "",
        f"| scenario | server | req/s (median) | min - max | x{base} | per round | p99 ms | "
        "CPU us/req | syscalls/req | server CPU | client CPU | other load | RSS MiB | flags |",
        "|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for sname, by_server in report["summary"]["scenarios"].items():
        for name, s in by_server.items():
            out.append(
                f"| {sname} | {name} | {s['rps_median']:,.0f} | {s['rps_min']:,.0f} - {s['rps_max']:,.0f} "
                f"| {fmt_ratio(s['ratio_median'])} | {' '.join(f'{x:.2f}' for x in s['ratio_per_round'])} "
                f"| {s['p99_ms_median']:.2f} | {_num(s['server_cpu_us_per_req'], '.1f')} "
                f"| {_num(s.get('syscalls_per_req'), '.2f')} "
                f"| {s['server_cpu_util'] * 100:.0f}% | {s['wrk_cpu_max'] * 100:.0f}% "
                f"| {'-' if s['other_on_server_core'] is None else format(s['other_on_server_core'] * 100, '.0f') + '%'} "
                f"| {s['rss_loaded_mib']:.1f} | {'; '.join(s['flags'])} |"
            )
    return out


def _holding(report: dict) -> list[str]:
    """Instructions (valgrind), syscalls and context switches (perf), CPU per request."""
    instr = report.get("instructions") or {}
    base = report["options"]["baseline"]
    scen = report["summary"]["scenarios"]
    names = list(dict.fromkeys([*instr, *scen]))
    if not instr and not any(s.get("syscalls_per_req") for by in scen.values() for s in by.values()):
        return []
    out = [
        "## Per request: instructions, syscalls, CPU",
        "",
        f"Instructions: user space, whole process tree, valgrind (callgrind), mean of two N2 - N1 "
        f"differences (spread = their difference); x{base} = {base}'s instructions / this server's "
        "(higher is better). Syscalls and context switches: perf stat over the warm-up run of each "
        "round, median. CPU: /proc user+sys over the measured runs, median.",
        "",
        f"| scenario | server | instructions/req | x{base} | spread | syscalls/req | ctx switches/req "
        "| CPU us/req | CPU min - max | where the instructions go |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for sname in names:
        rows = {**{k: {} for k in scen.get(sname, {})}, **instr.get(sname, {})}
        b = instr.get(sname, {}).get(base, {}).get("instructions_per_request")
        for name in rows:
            i = instr.get(sname, {}).get(name, {})
            t = scen.get(sname, {}).get(name, {})
            ipr = i.get("instructions_per_request")
            cpu = t.get("cpu_us_per_req_rounds") or []
            where = ", ".join(f"{k} {v * 100:.0f}%" for k, v in list((i.get("objects") or {}).items())[:4])
            out.append(
                f"| {sname} | {name} | {_num(ipr, ',')} | {fmt_ratio(b / ipr if b and ipr else None, 3)} "
                f"| {_num(i.get('spread') and i['spread'] * 100, '.2f') + '%' if i else '-'} "
                f"| {_num(t.get('syscalls_per_req'), '.2f')} | {_num(t.get('ctx_switches_per_req'), '.3f')} "
                f"| {_num(t.get('server_cpu_us_per_req'), '.1f')} "
                f"| {f'{min(cpu):.1f} - {max(cpu):.1f}' if cpu else '-'} | {where} |")
    return out


def _frameworks(report: dict) -> list[str]:
    from benchmarks.scenarios import SCENARIOS

    instr = report.get("instructions") or {}
    scen = report["summary"]["scenarios"]
    rows = []
    for sname, sc in SCENARIOS.items():
        if not sc.bare or (sname not in instr and sname not in scen):
            continue
        for name in dict.fromkeys([*scen.get(sname, {}), *instr.get(sname, {})]):
            fw_i = instr.get(sname, {}).get(name, {}).get("instructions_per_request")
            bare_i = instr.get(sc.bare, {}).get(name, {}).get("instructions_per_request")
            fw_c = scen.get(sname, {}).get(name, {}).get("server_cpu_us_per_req")
            bare_c = scen.get(sc.bare, {}).get(name, {}).get("server_cpu_us_per_req")
            share = bare_i / fw_i if fw_i and bare_i else (bare_c / fw_c if fw_c and bare_c else None)
            by = "instructions" if fw_i and bare_i else ("CPU" if share is not None else "-")
            t = scen.get(sname, {}).get(name, {})
            rows.append(
                f"| {sname} | {name} | {_num(t.get('rps_median'), ',.0f')} | {fmt_ratio(t.get('ratio_median'))} "
                f"| {_num(fw_c, '.1f')} | {_num(fw_i, ',')} | {_num(bare_i, ',')} "
                f"| {'-' if share is None else f'{min(share, 1) * 100:.0f}%'} "
                f"| {'-' if share is None else f'{max(0.0, 1 - share) * 100:.0f}%'} | {by} |")
    if not rows:
        return []
    base = report["options"]["baseline"]
    return [
        "## Real frameworks: the server's share and the framework's",
        "",
        "Server share = the same server's cost for the bare-ASGI `hello` / its cost for the framework "
        "scenario (by instructions when counted, else by CPU us/req); the rest is the framework "
        "(routing, request and response objects, validation, JSON) and the app.",
        "",
        f"| scenario | server | req/s | x{base} | CPU us/req | instructions/req | bare hello instr. "
        "| server share | framework share | by |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
        *rows,
    ]


def _idle(report: dict) -> list[str]:
    idle = report.get("idle") or {}
    if not idle.get("http") and not idle.get("websocket"):
        return []
    floor = (idle["http"].get("floor-uvloop") or {}).get("kib_per_connection")
    out = [
        "## Idle connections: RSS per connection",
        "",
        f"RSS of the server tree with N idle connections open minus before, / N (KiB). HTTP: "
        f"{idle['http_connections']:,} keep-alive connections after one GET / each; WebSocket: "
        f"{idle['ws_connections']:,} upgraded connections to the echo app, idle. The floor servers "
        f"are the event loop's transport with a do-nothing Protocol. RLIMIT_NOFILE {idle['fd_limit']}.",
        "",
        "| server | HTTP KiB/conn | over the uvloop floor | WebSocket KiB/conn | RSS before -> after (HTTP) MiB |",
        "|---|--:|--:|--:|--:|",
    ]
    for name in dict.fromkeys([*idle["http"], *idle["websocket"]]):
        h, w = idle["http"].get(name) or {}, idle["websocket"].get(name) or {}
        k = h.get("kib_per_connection")
        bad = [f"{x['failed']} failed" for x in (h, w) if x.get("failed")]
        bad += [f"only {x['still_open']} still open" for x in (h, w)
                if x.get("still_open") is not None and x["still_open"] < x["connections"]]
        out.append(
            f"| {name} | {_num(k, '.2f')}{' (' + ', '.join(bad) + ')' if bad else ''} "
            f"| {'-' if k is None or floor is None or name.startswith('floor') else f'{k - floor:+.2f}'} "
            f"| {_num(w.get('kib_per_connection'), '.2f')} "
            f"| {_rss_change(h)} |")
    return out


def _rss_change(h: dict) -> str:
    return f"{h['rss_before_kib'] / 1024:.1f} -> {h['rss_after_kib'] / 1024:.1f}" if h else "-"


def _profiles(report: dict) -> list[str]:
    instr = report.get("instructions") or {}
    out = []
    for sname in PROFILE_SCENARIOS:
        for name in PROFILE_FOR:
            r = instr.get(sname, {}).get(name)
            if not r or not r.get("top"):
                continue
            out += ["", f"{name}, {sname}: {r['instructions_per_request']:,} instructions/request; "
                    + ", ".join(f"{k} {v * 100:.1f}%" for k, v in r["objects"].items()), "",
                    "| self instructions/req | share | function | object |", "|--:|--:|---|---|"]
            out += [f"| {t['per_request']:,} | {t['share'] * 100:.1f}% | `{t['function'][:90]}` | {t['object']} |"
                    for t in r["top"][:15]]
    return ["## Where Palfrey's instructions go (callgrind, self cost per request)", *out] if out else []


def _pythons(report: dict) -> list[str]:
    """hello and post for every interpreter variant (name@label) next to the default build."""
    scen = report["summary"]["scenarios"]
    variants = [n for n in report["summary"]["servers"] if "@" in n]
    if not variants:
        return []
    instr = report.get("instructions") or {}
    out = ["## Interpreters and builds", "",
           "| scenario | server | req/s | x" + report["options"]["baseline"] + " | p99 ms | CPU us/req "
           "| instructions/req | version |", "|---|---|--:|--:|--:|--:|--:|---|"]
    for sname, by in scen.items():
        for name, s in by.items():
            kind = name.split("@")[0]
            if kind not in {v.split("@")[0] for v in variants}:
                continue
            ipr = instr.get(sname, {}).get(name, {}).get("instructions_per_request")
            out.append(f"| {sname} | {name} | {s['rps_median']:,.0f} | {fmt_ratio(s['ratio_median'])} "
                       f"| {s['p99_ms_median']:.2f} | {_num(s['server_cpu_us_per_req'], '.1f')} | {_num(ipr, ',')} "
                       f"| {report['summary']['servers'].get(name, {}).get('version', '?')} |")
    return out


def markdown(report: dict) -> str:
    meta, opts = report["meta"], report["options"]
    base = opts["baseline"]
    verdict = noise(report)
    report["noise"] = verdict
    out = [
        f"# Benchmark {meta['date']} on {meta['machine']['host']}",
        "",
        f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores, Linux {meta['machine']['kernel']}, "
        f"Python {meta['machine']['python']}, wrk {meta['machine']['wrk']}; load average "
        f"{meta['machine']['loadavg_at_start']:.2f} at start. "
        + (f"Server pinned to CPU {opts['server_cpu']}, load generator to CPU {opts['client_cpu']}. "
           if opts["server_cpu"] is not None else "Not pinned. ")
        + f"{opts['connections']} connections, {opts['rounds']} round(s) x {opts['duration']} s per "
        f"scenario (after a {opts['warmup']} s warm-up), servers interleaved per round. "
        f"Median over rounds; x{base} = paired ratio to {base}, median of the per-round ratios.",
        "",
        ("**Noisy run**: " if verdict["noisy"] else "Noise: ") + verdict["why"] + "."
        + (" Trust the instruction counts and syscalls per request first; req/s and CPU per request "
           "only where their spread is small." if verdict["noisy"] else ""),
        "",
    ]
    holding, throughput = _holding(report), _throughput(report) if report["summary"]["scenarios"] else []
    sections = [holding, throughput] if verdict["noisy"] else [throughput, holding]
    sections += [_frameworks(report), _idle(report), _pythons(report), _profiles(report)]
    for section in sections:
        if section:
            out += [*section, ""]
    out += [
        "## Servers",
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
    notes += [f"- {note}" for note in report.get("notes", [])]
    if notes:
        out += ["", "Notes:", "", *notes]
    out += [
        "",
        "Columns: CPU us/req = server CPU time (user+sys, whole process tree, /proc) per response; "
        "server CPU = the same as a share of one core (median); client CPU = the load generator's CPU "
        "as a share of its core, worst round (>= 90% flags `wrk-bound`: the client, not the "
        "server, limits the rate); other load = share of the server's core busy with anything "
        "but the server (other processes, loopback softirqs; > 20% flags `noisy core`); RSS = "
        "peak VmRSS of the server tree under load; p99 as wrk computes it (its histogram "
        "includes wrk's coordinated-omission correction), for `pipelined` per batch of 16; "
        "0.00 where the client measures none (WebSocket, h2load). "
        "`spread` flags (max - min) / median > 15% over the rounds.",
    ]
    return "\n".join(out) + "\n"


def _bars(ax, scen: dict, server_names: list[str], value, label: str, title: str,
          fmt: str = "%.2f") -> None:
    scenario_names = [s for s in scen if any(value(v) is not None for v in scen[s].values())]
    width = 0.8 / max(1, len(server_names))
    values = [v[0] for by in scen.values() for s in by.values() if (v := value(s)) is not None and v[0] > 0]
    if values and max(values) / min(values) > 20:
        ax.set_yscale("log")  # nginx's static files: hundreds of times fewer instructions
    for i, name in enumerate(server_names):
        xs, ys, lo, hi = [], [], [], []
        for j, sname in enumerate(scenario_names):
            s = scen[sname].get(name)
            v = value(s) if s else None
            if v is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(v[0])
            lo.append(v[0] - v[1])
            hi.append(v[2] - v[0])
        if xs:
            bars = ax.bar(xs, ys, width, label=name, yerr=[lo, hi], capsize=2)
            ax.bar_label(bars, fmt=fmt, fontsize=5 if len(server_names) > 4 else 6, padding=1,
                         rotation=90 if len(server_names) > 4 else 0)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(scenario_names)), scenario_names, fontsize=7, rotation=20)
    ax.set_ylabel(label, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=min(6, len(server_names)))
    ax.margins(y=0.18)


def chart(report: dict, path: Path) -> str | None:
    """ratios.png: req/s relative to the baseline and, when counted, instructions per request
    (baseline's / each server's); the instructions panel is on top when the run was noisy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no chart"
    base = report["options"]["baseline"]
    scen = report["summary"]["scenarios"]
    instr = report.get("instructions") or {}
    panels = []
    if any(v["ratio_median"] is not None for by in scen.values() for v in by.values()):
        panels.append((scen, lambda s: None if s["ratio_median"] is None else (
            s["ratio_median"], min(s["ratio_per_round"]), max(s["ratio_per_round"])),
            f"req/s / {base} (paired, median, min-max)",
            f"throughput relative to {base}, {report['options']['rounds']} round(s)", "%.2f"))
    ratios: dict[str, dict] = {}
    for sname, by in instr.items():
        b = by.get(base, {}).get("instructions_per_request")
        for name, r in by.items():
            ipr = r.get("instructions_per_request")
            if b and ipr:
                est = [b / e for e in r["estimates"] if e] or [b / ipr]
                ratios.setdefault(sname, {})[name] = (b / ipr, min(est), max(est))
    if ratios:
        panels.append((ratios, lambda v: v, f"{base} instructions / server's",
                       "user-space instructions per request (valgrind), relative to " + base,
                       "%.3f" if report["options"].get("ab") else "%.2f"))
    if not panels:
        return f"no ratios to {base} to plot"
    if report.get("noise", noise(report))["noisy"]:
        panels.reverse()  # the figures that hold first
    names = list(report["summary"]["servers"]) or sorted({n for by in instr.values() for n in by})
    names = [n for n in names if any(n in p[0].get(s, {}) for p in panels for s in p[0])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), dpi=100, squeeze=False)
    for ax, (data, value, label, title, fmt) in zip(axes[:, 0], panels):
        _bars(ax, data, names, value, label, title, fmt)
    meta = report["meta"]
    fig.suptitle(f"{meta['machine']['cores']} cores, {meta['date']}"
                 + (" (noisy run: instructions first)" if report.get("noise", {}).get("noisy") else ""),
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


def merge_instructions(data: dict, other: dict, servers: list[str], source: str) -> None:
    """Take `servers`' instruction counts from another run's report (a phase re-run alone)."""
    for sname, by in other.get("instructions", {}).items():
        for name, r in by.items():
            if name in servers:
                data.setdefault("instructions", {}).setdefault(sname, {})[name] = r
    data["failures"] = [f for f in data["failures"]
                        if not (f.startswith("instructions, ") and f.split(", ")[1] in servers)]
    if other.get("idle"):
        data["idle"] = other["idle"]
        data["failures"] = [f for f in data["failures"] if not f.startswith("idle-conns")]
        data.setdefault("notes", []).append(f"idle-conns from {source} (re-run alone after a fix)")
    if any(name in servers for by in other.get("instructions", {}).values() for name in by):
        data.setdefault("notes", []).append(
            f"{', '.join(servers)}: instruction counts of {', '.join(sorted(other['instructions']))} "
            f"from {source} (that phase re-run alone after a fix to the harness)")


if __name__ == "__main__":
    # python -m benchmarks.report RUN.json [--merge OTHER.json SERVER,...]: re-render RUN.
    args = sys.argv[1:]
    if "--merge" in args:
        i = args.index("--merge")
        other_path, names = Path(args[i + 1]), args[i + 2].split(",")
        data = json.loads(Path(args[0]).read_text())
        merge_instructions(data, json.loads(other_path.read_text()), names, other_path.name)
        Path(args[0]).write_text(json.dumps(data, separators=(",", ":")) + "\n")
        args = [args[0]]
    for arg in args:
        src = Path(arg)
        data = json.loads(src.read_text())
        src.with_suffix(".md").write_text(markdown(data))
        png = src.parent / ("ab.png" if data["options"].get("ab") else "ratios.png")
        print(chart(data, png) or f"wrote {src.with_suffix('.md')} and {png}")
