"""The benchmark harness's pieces (benchmarks/), not the benchmarks: parsers on canned tool
output, and the fixed-count and idle-connection clients against a real Palfrey."""

from __future__ import annotations

import subprocess
import sys

from benchmarks import h2load, idle, instructions, perfstat

from tests.support.common import ROOT

# A callgrind dump as valgrind 3.19 writes it: name compression, a call whose cost line
# (inclusive) must not count as the caller's self cost, several objects.
CALLGRIND = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m palfrey benchmarks.app:app
part: 2

desc: I1 cache:
desc: Trigger: dump ph10000

positions: line
events: Ir
summary: 1600

ob=(1) /work/src/palfrey/_parser.cpython-311-x86_64-linux-gnu.so
fl=(1) src/palfrey/_parser.c
fn=(1) __pyx_f_7palfrey_7_parser_on_data
0 500
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfi=(2) ???
cfn=(2) memcpy
calls=10 0
0 300
0 100

ob=(2)
fl=(2)
fn=(2)
0 300

ob=(3) /root/.pyenv/versions/3.11.7/bin/python3.11
fl=(3) ???
fn=(3) _PyEval_EvalFrameDefault
0 700

totals: 1600
"""


def test_callgrind_parser_self_costs_and_total():
    prof = instructions.parse_callgrind(CALLGRIND)
    assert prof.total == 1600
    assert prof.functions == {
        ("/work/src/palfrey/_parser.cpython-311-x86_64-linux-gnu.so",
         "__pyx_f_7palfrey_7_parser_on_data"): 600,
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "memcpy"): 300,
        ("/root/.pyenv/versions/3.11.7/bin/python3.11", "_PyEval_EvalFrameDefault"): 700,
    }
    assert instructions.shares(prof) == {"python": 0.4375, "palfrey": 0.375, "libc": 0.1875}
    top = instructions.top_functions(prof, per=100, n=2)
    assert [(t["function"], t["per_request"], t["object"]) for t in top] == [
        ("_PyEval_EvalFrameDefault", 7, "python3.11"),
        ("__pyx_f_7palfrey_7_parser_on_data", 6, "_parser.cpython-311-x86_64-linux-gnu.so"),
    ]


def test_callgrind_difference_of_two_phases():
    small = instructions.parse_callgrind(CALLGRIND)
    big = instructions.parse_callgrind(CALLGRIND.replace("summary: 1600", "summary: 5600")
                                       .replace("0 700", "0 4700"))
    diff = big - small
    assert diff.total == 4000
    assert diff.functions[("/root/.pyenv/versions/3.11.7/bin/python3.11", "_PyEval_EvalFrameDefault")] == 4000


H2LOAD = """\
starting benchmark...
spawning thread #0: 16 total client(s). 160 total requests
Application protocol: h2c
progress: 100% done

finished in 41.96ms, 3813.34 req/s, 143.04KB/s
requests: 160 total, 160 started, 158 done, 157 succeeded, 3 failed, 2 errored, 0 timeout
status codes: 157 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 6.00KB (6142) total, 2.05KB (2096) headers (space savings 80.12%), 2.04KB (2080) data
                     min         max         mean         sd        +/- sd
time for request:      376us     10.45ms      2.25ms      2.02ms    88.12%
"""


def test_h2load_parser():
    r = h2load.parse(H2LOAD)
    assert (r["requests"], r["succeeded"], r["failed"], r["errored"]) == (158, 157, 3, 2)
    assert r["status"] == {"2xx": 157, "3xx": 0, "4xx": 1, "5xx": 0}
    assert r["duration_us"] == 41960
    assert r["data_bytes"] == 2080
    assert r["mean_request_us"] == 2250.0
    assert h2load.argv("http://127.0.0.1:1/", requests=5, connections=16, http1=True)[:4] == \
        ["h2load", "-c16", "-m1", "-n16"]


def test_perf_stat_parser():
    text = ("# started on Mon Nov 30\n\n102676,,raw_syscalls:sys_enter,410987649,100.00,,\n"
            "13754,,context-switches,410987649,100.00,,\n")
    assert perfstat.parse(text) == {"syscalls": 102676, "context_switches": 13754}
    assert perfstat.parse("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n") is None


def test_wsclient_stops_at_the_exact_count(server_factory):
    srv = server_factory("benchmarks.app:app")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.wsclient", "--port", str(srv.port), "-c", "4", "-k", "3",
         "-n", "1001", "-d", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert '"messages": 1001' in out.stdout.splitlines()[-1]
    assert '"closed": 0' in out.stdout.splitlines()[-1]


def test_idle_client_opens_http_and_websocket_connections(server_factory):
    srv = server_factory("benchmarks.app:app")
    for websocket, count in ((False, 40), (True, 10)):
        socks, failures = idle.open_idle(srv.port, count, websocket=websocket, timeout=30)
        try:
            assert (len(socks), failures) == (count, 0)
        finally:
            for s in socks:
                s.close()
