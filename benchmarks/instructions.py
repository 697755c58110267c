"""User-space instructions per request, counted by valgrind (callgrind): figures that hold.

Instruction counts do not depend on what else the machine runs, so they compare two servers
(or two builds of one) on a noisy shared VM where req/s and CPU time swing by tens of percent.

Method, per server start (`python -m benchmarks --instructions`):
- the server runs under `valgrind --tool=callgrind --trace-children=yes` (every process of
  the tree, every thread of each process counted), PYTHONHASHSEED=0, pinned as usual;
- per scenario: an unrecorded warm-up, then the counters are zeroed and four phases run:
  N1, N2, N1, N2 requests (messages), each driven by a client that stops at exactly that
  count (h2load -n, or wsclient -n) and followed by `callgrind_control --dump` of every
  process; a phase's count is the sum of the dumps' `summary:` lines;
- instructions per request = (I(N2) - I(N1)) / (N2 - N1) for each pair: what every phase
  costs alike (connecting the client's connections, timers while idle) cancels out;
- the two pairs give the repeatability (their spread; expected well under 1 %), the figure
  is their mean; per-function and per-object self costs per request come from the first pair.

Under valgrind a server runs ~30-50x slower, so the client is never the bottleneck and every
readiness poll finds all connections ready; a threaded server's threads are serialized.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from benchmarks import h2load, procstat, servers

REPEAT_LIMIT = 0.01  # flag when the two estimates differ by more than this
TOP_FUNCTIONS = 25


def unusable() -> str | None:
    for tool in ("valgrind", "callgrind_control", "h2load"):
        if shutil.which(tool) is None:
            pkg = "nghttp2-client" if tool == "h2load" else "valgrind"
            return f"{tool} is not on PATH (apt-get install {pkg})"
    return None


def valgrind_argv(out_dir: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--trace-children=yes", "--dump-line=no",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p"]


# -- callgrind's output -------------------------------------------------------------------------

_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")
_RECURSION = re.compile(r"'\d+$")
_COST_START = "0123456789+-*"


class Profile:
    """One callgrind dump: the total instruction count and the self cost of each function
    (keyed by (object, function))."""

    def __init__(self, total: int, functions: dict[tuple[str, str], int]):
        self.total = total
        self.functions = functions

    def __add__(self, other: Profile) -> Profile:
        functions = defaultdict(int, self.functions)
        for key, cost in other.functions.items():
            functions[key] += cost
        return Profile(self.total + other.total, dict(functions))

    def __sub__(self, other: Profile) -> Profile:
        functions = defaultdict(int, self.functions)
        for key, cost in other.functions.items():
            functions[key] -= cost
        return Profile(self.total - other.total, dict(functions))


def parse_callgrind(text: str) -> Profile:
    """Parse callgrind's output format (name compression included): the `summary:` total and
    per-function self costs of the first event (Ir). A cost line right after `calls=` is the
    inclusive cost of that call and is not the caller's own."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fl": {}, "fn": {}}
    space = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn",
             "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl"}
    positions = 1
    total = None
    ob, fn = "", ""
    skip_next = False
    functions: dict[tuple[str, str], int] = defaultdict(int)
    for line in text.splitlines():
        if not line:
            continue
        if line[0] in _COST_START:
            if skip_next:
                skip_next = False
                continue
            parts = line.split()
            if len(parts) > positions:
                functions[(ob, fn)] += int(parts[positions])
            continue
        key, sep, value = line.partition("=")
        if sep and key in space:
            m = _NAME.match(value)
            table = names[space[key]]
            if m:
                if m.group(2) is not None:
                    table[m.group(1)] = m.group(2)
                value = table.get(m.group(1), value)
            if key == "ob":
                ob = value
            elif key == "fn":
                fn = value
            continue
        if key == "calls" and sep:
            skip_next = True
            continue
        if line.startswith("positions:"):
            positions = len(line.split()) - 1
        elif line.startswith("summary:"):
            total = int(line.split()[1])
    if total is None:
        total = sum(functions.values())
    return Profile(total, {k: v for k, v in functions.items() if v})


OBJECT_KINDS = (
    ("palfrey", re.compile(r"palfrey/_parser|palfrey/.*\.so")),
    ("uvloop", re.compile(r"uvloop/")),
    ("httptools", re.compile(r"httptools/")),
    ("granian", re.compile(r"granian/")),
    ("pydantic-core", re.compile(r"pydantic_core/")),
    ("python", re.compile(r"(libpython[\d.]+|/python[\d.]*$|/_\w+\.cpython-\d+|lib-dynload)")),
    ("libc", re.compile(r"libc\.so|libm\.so|libpthread|ld-linux")),
    ("nginx", re.compile(r"nginx")),
)


def object_kind(path: str) -> str:
    for kind, pattern in OBJECT_KINDS:
        if pattern.search(path):
            return kind
    return "other"


def shares(profile: Profile) -> dict[str, float]:
    """Share of the profile's instructions by kind of object (python, palfrey, uvloop...)."""
    by_kind: dict[str, int] = defaultdict(int)
    for (ob, _), cost in profile.functions.items():
        by_kind[object_kind(ob)] += cost
    whole = sum(v for v in by_kind.values() if v > 0) or 1
    return {k: round(v / whole, 4) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v > 0}


def top_functions(profile: Profile, per: int, n: int = TOP_FUNCTIONS) -> list[dict]:
    """The `n` functions with the largest self cost, in instructions per request."""
    merged: dict[tuple[str, str], int] = defaultdict(int)
    for (ob, fn), cost in profile.functions.items():
        merged[(ob, _RECURSION.sub("", fn))] += cost  # callgrind's "'2": a recursion level
    items = sorted(merged.items(), key=lambda kv: -kv[1])[:n]
    whole = profile.total or 1
    return [{"function": fn, "object": Path(ob).name, "per_request": round(cost / per),
             "share": round(cost / whole, 4)} for (ob, fn), cost in items]


# -- driving a server under callgrind -----------------------------------------------------------


class Callgrind:
    """The callgrind side of one server start: zero and dump every process of its tree."""

    def __init__(self, root_pid: int, out_dir: Path, log, keep: Path | None = None):
        self.root = root_pid
        self.out_dir = out_dir
        self.log = log
        self.keep = keep  # where to move the dumps (for callgrind_annotate, kcachegrind)
        self.label = ""
        # Processes that callgrind_control cannot reach: nginx's master sleeps in sigsuspend()
        # where vgdb does not wake it. It runs no code per request, so it is left out.
        self.unreachable: set[int] = set()

    def _control(self, flag: str) -> None:
        for pid in procstat.descendants(self.root):
            if pid in self.unreachable:
                continue
            try:
                subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, timeout=15)
            except subprocess.TimeoutExpired:
                self.unreachable.add(pid)
                self.log(f"  callgrind_control cannot reach PID {pid}: left out (it must be idle)")

    def zero(self) -> None:
        self._control("--zero")

    def dump(self) -> Profile:
        """Dump every process and sum the new dumps."""
        before = set(self.out_dir.glob("callgrind.out.*.*"))
        self._control("--dump")
        deadline = time.monotonic() + 60
        profile = Profile(0, {})
        new: list[Path] = []
        while time.monotonic() < deadline:
            new = sorted(set(self.out_dir.glob("callgrind.out.*.*")) - before)
            if new and all(_complete(p) for p in new):
                break
            time.sleep(0.1)
        for path in new:
            profile = profile + parse_callgrind(path.read_text(errors="replace"))
            if self.keep is not None:
                self.keep.mkdir(parents=True, exist_ok=True)
                shutil.move(path, self.keep / f"{self.label}.{path.name.removeprefix('callgrind.out.')}")
            else:
                path.unlink()  # they are large; the numbers are kept
        return profile


def _complete(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 200))
            return b"totals:" in f.read()
    except OSError:
        return False


def drive(scenario, port: int, requests: int, opts, tmp: Path) -> str | None:
    """Send exactly `requests` requests (messages); None if all succeeded, else what failed."""
    argv = scenario.client_argv(port, tmp, opts, requests=requests)
    if opts.client_cpu is not None:
        argv = ["taskset", "-c", opts.client_cpu, *argv]
    limit = 60 + requests * 0.2  # a server under valgrind does a few hundred requests/s at least
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=limit, cwd=servers.REPO,
                             env={**os.environ, "PYTHONPATH": str(servers.REPO)})
    except subprocess.TimeoutExpired:
        return f"the client did not finish {requests} requests in {limit:.0f} s"
    if scenario.websocket:
        line = [x for x in out.stdout.splitlines() if x.startswith("WS_JSON ")]
        import json

        got = json.loads(line[-1][8:])["messages"] if line else 0
        return None if got == requests else f"{got} of {requests} echoes: {out.stderr[-300:]}"
    try:
        r = h2load.parse(out.stdout)
    except ValueError as exc:
        return str(exc)
    want = max(requests, opts.connections if not scenario.http2 else 1)
    if r["succeeded"] == want and r["status"]["2xx"] == want:
        return None
    # h2load cannot parse a status line with an empty reason phrase ("HTTP/1.1 200 \r\n",
    # hypercorn's): it counts such answers as failed although every one arrived whole.
    if (r["requests"] == want and not r["errored"] and not r["timeout"] and not any(r["status"].values())
            and r["data_bytes"] >= want):
        return None
    return f"{r['succeeded']} of {want} succeeded, status {r['status']}"


def measure_start(server: servers.RunningServer, out_dir: Path, wanted: list, opts, tmp: Path,
                  log) -> dict[str, dict]:
    """Run the four phases of every scenario in `wanted` against one server under callgrind."""
    grind = Callgrind(server.pid, out_dir, log, opts.keep_callgrind)
    results: dict[str, dict] = {}
    for scenario in wanted:
        n1, n2 = (max(1, round(c * opts.instr_scale)) for c in scenario.counts)
        if not scenario.websocket:
            n1 = max(n1, opts.connections if not scenario.http2 else 1)
        wrong = drive(scenario, server.port, max(1, n1 // 4), opts, tmp)  # warm-up
        if wrong:
            log(f"  {scenario.name}: FAILED warm-up: {wrong}")
            results[scenario.name] = {"error": wrong}
            continue
        grind.zero()
        phases: list[tuple[int, Profile]] = []
        started = time.monotonic()
        for i, n in enumerate((n1, n2, n1, n2)):
            wrong = drive(scenario, server.port, n, opts, tmp)
            if wrong:
                break
            grind.label = f"callgrind.{server.spec.name}.{scenario.name}.phase{i + 1}-{n}"
            phases.append((n, grind.dump()))
        if wrong:
            log(f"  {scenario.name}: FAILED: {wrong}")
            results[scenario.name] = {"error": wrong}
            continue
        estimates = [(phases[i + 1][1].total - phases[i][1].total) / (n2 - n1) for i in (0, 2)]
        mean = statistics.fmean(estimates)
        spread = (max(estimates) - min(estimates)) / mean if mean else 0.0
        per_request = phases[1][1] - phases[0][1]
        results[scenario.name] = {
            "instructions_per_request": round(mean),
            "estimates": [round(x) for x in estimates],
            "spread": round(spread, 5),
            "n1": n1, "n2": n2,
            "phase_totals": [p.total for _, p in phases],
            "objects": shares(per_request),
            "top": top_functions(per_request, n2 - n1),
            "seconds": round(time.monotonic() - started, 1),
        }
        log(f"  {scenario.name:<14} {mean:>12,.0f} instructions/request  (estimates "
            f"{', '.join(f'{x:,.0f}' for x in estimates)}; spread {spread * 100:.2f}%; "
            f"{time.monotonic() - started:.0f} s)")
    return results


def run_phase(opts, server_names: list[str], scenario_names: list[str], log) -> dict:
    """Every (server, scenario) that applies, one server start per scenario group.

    Returns {"results": {scenario: {server: {...}}}, "failures": [...], "skipped": {...}}."""
    import tempfile

    from benchmarks.scenarios import SCENARIOS

    why = unusable()
    if why:
        log(f"instruction counts skipped: {why}")
        return {"results": {}, "failures": [], "skipped": why}
    results: dict[str, dict[str, dict]] = {}
    failures: list[str] = []
    skipped: dict[str, str] = {}
    for name in server_names:
        spec = servers.SERVERS[name]
        wanted = [SCENARIOS[s] for s in scenario_names if spec.serves(SCENARIOS[s])]
        groups: dict[tuple, list] = {}
        for s in wanted:
            groups.setdefault(s.group, []).append(s)
        for (app, http2), group in groups.items():
            log(f"[instructions] {name}: {', '.join(s.name for s in group)} (under callgrind)")
            with tempfile.TemporaryDirectory(prefix=f"palfrey-bench-vg-{name}-") as tmpdir:
                tmp = Path(tmpdir)
                try:
                    server = servers.RunningServer(
                        spec, opts.server_cpu, tmp, opts.startup_timeout * 8, app=app, http2=http2,
                        wrap=valgrind_argv(tmp), env={"PYTHONHASHSEED": "0"})
                except RuntimeError as exc:
                    if http2 and "not supported" in str(exc):
                        skipped[f"{name} (HTTP/2)"] = _refusal(str(exc))
                        log(f"  skipped: {skipped[f'{name} (HTTP/2)']}")
                    else:
                        failures.append(f"instructions, {name}: {exc}")
                        log(f"  FAILED to start: {exc}")
                    continue
                with server:
                    for s in group:
                        wrong = servers.verify(server.port, s.name)
                        if wrong:
                            failures.append(f"instructions, {name}, {s.name}: wrong response: {wrong}")
                            log(f"  {s.name}: WRONG RESPONSE, skipped: {wrong}")
                            group = [g for g in group if g is not s]
                    for sname, r in measure_start(server, tmp, group, opts, tmp, log).items():
                        if "error" in r:
                            failures.append(f"instructions, {name}, {sname}: {r['error']}")
                        else:
                            results.setdefault(sname, {})[name] = r
                    server.stop(grace=60)  # valgrind writes its last dump on exit
    return {"results": results, "failures": failures, "skipped": skipped}


def _refusal(message: str) -> str:
    for line in message.splitlines():
        if "not supported" in line:
            return "refuses --http2: " + line.strip()
    return message.splitlines()[0]


if __name__ == "__main__":  # python -m benchmarks.instructions FILE...: totals and top functions
    for arg in sys.argv[1:]:
        prof = parse_callgrind(Path(arg).read_text(errors="replace"))
        print(f"{arg}: {prof.total:,} instructions; by object {shares(prof)}")
        for row in top_functions(prof, 1, 20):
            print(f"  {row['per_request']:>14,}  {row['share'] * 100:5.1f}%  {row['function']}  ({row['object']})")
