"""Process measurements from /proc (Linux): CPU time and RSS of a process and its descendants.

A server may run as a tree (granian and hypercorn supervise a worker process, nginx has a
master and a worker), so every figure is summed over the live tree of the PID we started.
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace")
    except OSError:  # the process is gone, or never was
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may contain spaces or ')')."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    return text[text.rfind(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """root and every live process below it (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))  # fields[1] is ppid
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads, also when it is a zombie)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # stat fields 14 and 15 (1-based, counting pid and comm) are utime and stime.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def rss_kib(pid: int) -> int:
    text = _read(f"/proc/{pid}/status")
    if text is None:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # kernel threads and zombies have no VmRSS line


def tree_rss_kib(root: int) -> int:
    return sum(rss_kib(pid) for pid in descendants(root))


def core_busy_seconds(cpu: int) -> float | None:
    """Busy time of one CPU (user+nice+system+irq+softirq+steal, from /proc/stat), seconds.

    Compared with the CPU time of the process pinned there, it tells how much else ran on
    that core during a measurement (other tenants, other test runs, loopback softirqs).
    """
    text = _read("/proc/stat")
    if text is None:
        return None
    prefix = f"cpu{cpu} "
    for line in text.splitlines():
        if line.startswith(prefix):
            v = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLOCK_TICKS
    return None
