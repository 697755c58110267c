"""h2load (Debian's nghttp2-client) as the harness's second load generator.

It does what wrk cannot: HTTP/2 (h2c with prior knowledge, several streams per connection)
and an exact number of requests (`-n`), which the instruction-count phase needs: under
valgrind a server is some 30x slower, so it is driven by a count, not a duration.

    argv(url, requests=N | duration=S, connections=C, streams=M, http1=..., body=PATH)
    parse(text) -> {"requests": done, "succeeded", "failed", "errored", "status": {"2xx": ...},
                    "duration_us", "rps", "data_bytes", "mean_request_us"}
"""

from __future__ import annotations

import re
from pathlib import Path

_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def argv(url: str, *, requests: int | None = None, duration: float | None = None,
         connections: int = 16, streams: int = 1, http1: bool = False, body: Path | None = None,
         content_type: str = "application/octet-stream", warmup: float = 0) -> list[str]:
    """h2load's command line. `streams` is the streams per HTTP/2 connection, or the
    pipelining depth over HTTP/1.1 (h2load's -m)."""
    out = ["h2load", f"-c{connections}", f"-m{streams}"]
    if requests is not None:
        # At least one request per connection, or h2load refuses the count.
        out.append(f"-n{max(requests, connections)}")
    elif duration is not None:
        out += ["-D", f"{duration:g}"]
        if warmup:
            out.append(f"--warm-up-time={warmup:g}")
    if http1:
        out.append("--h1")
    if body is not None:
        out += ["-d", str(body), "-H", f"content-type: {content_type}"]
    return [*out, url]


def _duration_us(value: str, unit: str) -> float:
    return float(value) * _UNITS_US[unit]


def parse(text: str) -> dict:
    """The numbers of h2load's report; raises ValueError if it has none (h2load failed)."""
    m = re.search(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", text, re.MULTILINE)
    r = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.MULTILINE)
    st = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.MULTILINE)
    if not (m and r and st):
        raise ValueError(f"not an h2load report: {text[-500:]!r}")
    data = re.search(r"\((\d+)\) data", text)
    mean = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
    total, started, done, ok, failed, errored, timeout = map(int, r.groups())
    return {
        "requests": done,
        "succeeded": ok,
        "failed": failed,
        "errored": errored,
        "timeout": timeout,
        "status": dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, st.groups()))),
        "duration_us": int(_duration_us(m.group(1), m.group(2))),
        "rps": float(m.group(3)),
        "data_bytes": int(data.group(1)) if data else 0,
        "mean_request_us": _duration_us(mean.group(1), mean.group(2)) if mean else None,
    }
