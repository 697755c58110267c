"""Syscalls and context switches of a server process tree, counted by `perf stat` (linux-perf).

Tracepoints and software events work on VMs whose hardware counters do not: the harness
counts `raw_syscalls:sys_enter` (every syscall entry) and `context-switches` over one
load-generator run, for every process and thread of the server.

    counter = PerfCounter.start(pids)     # perf stat -x, -e ... -p PID,PID,...
    ... load ...
    counts = counter.stop()               # {"syscalls": n, "context_switches": n} or None
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

EVENTS = {"raw_syscalls:sys_enter": "syscalls", "context-switches": "context_switches"}
_usable: str | None | bool = False  # not checked yet


def unusable() -> str | None:
    """None if `perf stat` can count the events here, else why not (checked once)."""
    global _usable
    if _usable is False:
        if shutil.which("perf") is None:
            _usable = "perf is not on PATH (apt-get install linux-perf)"
        else:
            try:
                out = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(EVENTS), "true"],
                                     capture_output=True, text=True, timeout=30)
                counts = parse(out.stderr)
                _usable = None if out.returncode == 0 and counts else (
                    "perf stat cannot count " + ", ".join(EVENTS) + ": " + out.stderr.strip()[-200:])
            except (OSError, subprocess.SubprocessError) as exc:
                _usable = f"perf stat failed: {exc}"
    return _usable


def parse(text: str) -> dict[str, int] | None:
    """perf stat's CSV (-x,) lines -> {"syscalls": n, "context_switches": n}; None when an
    event is missing or was "<not counted>"/"<not supported>"."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[2] in EVENTS:
            try:
                counts[EVENTS[fields[2]]] = int(float(fields[0]))
            except ValueError:
                return None
    return counts if len(counts) == len(EVENTS) else None


class PerfCounter:
    def __init__(self, proc: subprocess.Popen, out: Path):
        self.proc = proc
        self.out = out

    @classmethod
    def start(cls, pids: list[int]) -> PerfCounter:
        out = Path(tempfile.mkstemp(prefix="palfrey-bench-perf-")[1])
        proc = subprocess.Popen(
            ["perf", "stat", "-x,", "-o", str(out), "-e", ",".join(EVENTS),
             "-p", ",".join(map(str, pids))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        time.sleep(0.2)  # perf attaches to every thread before the load starts
        return cls(proc, out)

    def stop(self) -> dict[str, int] | None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)  # perf prints its counts and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            return parse(self.out.read_text(errors="replace"))
        finally:
            self.out.unlink(missing_ok=True)
