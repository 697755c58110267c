"""The whole test suite against the compiled core built under AddressSanitizer and UBSan.

    python -m tests.sanitize                     # build (once) and run every test
    python -m tests.sanitize -- tests/test_hardening.py -k 10000   # pytest arguments
    python -m tests.sanitize --rebuild           # after changing the .pyx/.pxi or llhttp

The extension (_parser.pyx, _websocket.pxi and llhttp) is built with clang under
``PALFREY_SANITIZE=address,undefined`` into its own virtualenv (``--venv``, default
build/sanitize; tests/native_build.py). The interpreter is not instrumented, so ASan's runtime
is preloaded (LD_PRELOAD) into it and, through the environment, into every server the tests
start; Python's allocator is switched to malloc so ASan also watches Python objects'
memory; leak detection is off for the interpreter as a whole (it frees nothing at exit) and
tests/test_hardening.py counts the live connection objects instead. Every report goes to a
file in ``--logs`` (the servers' stderr belongs to the tests); the run fails if any was written.
Needs: apt-get install clang libclang-rt-dev.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import native_build

ROOT = native_build.ROOT
SANITIZE = "address,undefined"
# What makes a file in --logs a finding: an ASan error or a UBSan diagnostic. (Other lines
# land there too, e.g. libFuzzer's stack trace when an atheris run exits.)
REPORT = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer")


# Programs the tests run that must not get ASan's runtime: curl hangs under it (the
# preload is for Python, whose extension needs it). Each gets a shim earlier on PATH.
NOT_PRELOADED = ("curl", "nghttp", "nginx", "h2load", "wrk")


def sanitizer_env(logs: Path) -> dict[str, str]:
    shims = logs / "bin"
    shims.mkdir(exist_ok=True)
    for tool in NOT_PRELOADED:
        real = shutil.which(tool)
        if real:
            (shims / tool).write_text(f'#!/bin/sh\nunset LD_PRELOAD\nexec "{real}" "$@"\n')
            (shims / tool).chmod(0o755)
    return {
        "LD_PRELOAD": str(native_build.asan_runtime()),
        "PYTHONMALLOC": "malloc",
        "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}",
        # A small quarantine: the tests that bound a server's memory growth stay meaningful.
        "ASAN_OPTIONS": f"detect_leaks=0:quarantine_size_mb=16:log_path={logs}/asan",
        "UBSAN_OPTIONS": f"print_stacktrace=1:halt_on_error=1:log_path={logs}/ubsan",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sanitize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", default=str(ROOT / "build" / "sanitize"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--logs", default=None, help="where reports go (default: a new temp dir)")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args(argv)
    python = native_build.build(Path(args.venv), SANITIZE, args.rebuild)
    logs = Path(args.logs or tempfile.mkdtemp(prefix="palfrey-asan-"))
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **sanitizer_env(logs))
    # The instrumented module must be the one imported (not the work tree's in-place build).
    check = subprocess.run([str(python), "-c", "import palfrey._parser as p; print(p.__file__)"],
                           env=env, cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    module = check.stdout.strip()
    nm = subprocess.run(["nm", "-D", module], capture_output=True, text=True, check=True).stdout
    if "__asan_report" not in nm:
        sys.exit(f"{module} is not instrumented")
    print(f"instrumented module: {module}\nreports: {logs}", flush=True)
    pytest_args = args.pytest_args or ["-n", "2"]
    status = subprocess.run([str(python), "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
                            env=env, cwd=ROOT, check=False).returncode  # fmt: skip
    reports = [r for r in sorted(logs.iterdir())
               if r.is_file() and REPORT.search(r.read_text(errors="replace"))]  # fmt: skip
    for report in reports:
        print(f"==== {report}\n{report.read_text(errors='replace')[:20000]}")
    print(f"pytest exit status {status}; {len(reports)} sanitizer report(s) in {logs}")
    return status or (1 if reports else 0)


if __name__ == "__main__":
    sys.exit(main())
