"""Fuzz the compiled HTTP/1.1 protocol and the WebSocket data path (targets.py).

    python -m tests.fuzz --seconds 30                    # every target, 30 s each, atheris
    python -m tests.fuzz --target split --seconds 600    # one target, ten minutes
    python -m tests.fuzz --engine random --seconds 30    # no atheris: seeded random mutations
    python -m tests.fuzz --replay FILE...                # run saved inputs through every target
    python -m tests.fuzz --native --seconds 600 --jobs 2 # the compiled code instrumented too

With --native the extension is built with clang under ``-fsanitize=fuzzer-no-link,address``
into its own virtualenv (``--native-venv``, default build/fuzz-native; tests/native_build.py)
and each child runs there with ASan's runtime and libFuzzer preloaded, so libFuzzer steers
by the edges of _parser.pyx, _websocket.pxi and llhttp as well as the instrumented Python,
and any memory error in them is a crash. ``--merge DIR`` then minimises the corpora the runs
grew into DIR (libFuzzer -merge=1): what tests/fuzz/corpus/native keeps.

Each atheris run is a child process (libFuzzer exits the process when it stops), started
from a fresh copy of tests/fuzz/corpus/seeds and regressions; a crashing input is written to
the work directory (printed) and the run fails. Keep it as tests/fuzz/corpus/regressions/NAME:
tests/test_fuzz.py replays every file there. The last line is one JSON object per target:
{"target", "engine", "seconds", "executions", "crashes"}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = HERE / "corpus" / "seeds"
REGRESSIONS = HERE / "corpus" / "regressions"
MAX_LEN = 4096
TARGET_NAMES = ["protocol", "split", "websocket", "response"]  # targets.TARGETS, not imported
# libFuzzer's own deadline per input: anything slower is a hang.
INPUT_TIMEOUT_S = 10
NATIVE = HERE / "corpus" / "native"  # minimised by --merge, one directory per target
NATIVE_SANITIZE = "fuzzer-no-link,address"
# Python leaks by design at exit; ASan's own leak check is no finding of ours.
NATIVE_ASAN_OPTIONS = "detect_leaks=0:allocator_may_return_null=1:verify_asan_link_order=0"


def corpus_files() -> list[Path]:
    return sorted(p for d in (SEEDS, REGRESSIONS) for p in d.iterdir() if p.is_file())


def native_files(target: str) -> list[Path]:
    d = NATIVE / target
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


class Native:
    """The instrumented build: its python and what it runs with."""

    def __init__(self, venv: Path, rebuild: bool = False) -> None:
        sys.path.insert(0, str(ROOT))
        from tests import native_build

        self.python = str(native_build.build(venv, NATIVE_SANITIZE, rebuild))
        # libFuzzer first: its coverage callbacks must win over the no-op ones in ASan's
        # runtime (which then cannot check that it comes first: verify_asan_link_order=0).
        preload = [native_build.libfuzzer_runtime(venv), native_build.asan_runtime()]
        self.env = {"LD_PRELOAD": " ".join(map(str, preload)),
                    "ASAN_OPTIONS": NATIVE_ASAN_OPTIONS}  # fmt: skip


# -- atheris, in a child process ---------------------------------------------------------------


def atheris_child(target_name: str, libfuzzer_args: list[str]) -> None:
    """Runs inside the child: never returns (libFuzzer calls exit)."""
    import atheris

    # wsproto and the WebSocket glue are Python: instrumented, they steer the websocket target.
    with atheris.instrument_imports(include=["tests.fuzz", "tests.support.harness", "wsproto",
                                              "palfrey.protocols"]):
        from tests.fuzz import targets
    # libFuzzer starts its merge and fork workers by running argv[0] again: the launcher.
    argv0 = os.environ.get("PALFREY_FUZZ_LAUNCHER", sys.argv[0])
    atheris.Setup([argv0, *libfuzzer_args], targets.TARGETS[target_name])
    atheris.Fuzz()


def child_command(python: str, target: str, workdir: Path) -> list[str]:
    """``python -m tests.fuzz --child TARGET --`` as an executable of its own, so that
    libFuzzer can run it again for -merge and -fork (the env var tells the child its name)."""
    launcher = workdir / f"launch-{target}"
    launcher.write_text(f'#!/bin/sh\nexec "{python}" -m tests.fuzz --child {target} -- "$@"\n')
    launcher.chmod(0o755)
    return [str(launcher)]


def child_env(launcher: str, native: Native | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PALFREY_FUZZ_LAUNCHER=launcher)  # fmt: skip
    if native:
        env.update(native.env)
    return env


def run_atheris(target: str, seconds: int, workdir: Path, native: Native | None = None,
                jobs: int = 1) -> dict:  # fmt: skip
    corpus = workdir / f"corpus-{target}"
    corpus.mkdir(parents=True, exist_ok=True)
    for path in [*corpus_files(), *native_files(target)]:
        shutil.copy(path, corpus / path.name)
    artifacts = workdir / f"artifacts-{target}"
    artifacts.mkdir(exist_ok=True)
    args = [
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN}",
        f"-timeout={INPUT_TIMEOUT_S}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    if jobs > 1:  # libFuzzer's fork mode: one corpus, `jobs` processes, crashes still stop it
        args[:0] = [f"-fork={jobs}", "-ignore_crashes=0"]
    launcher = child_command(native.python if native else sys.executable, target, workdir)
    cmd = [*launcher, *args]
    env = child_env(launcher[0], native)
    started = time.monotonic()
    # Bounded: libFuzzer stops itself at max_total_time; the margin covers start and a
    # last slow input.
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=seconds + 60)  # fmt: skip
    elapsed = time.monotonic() - started
    executions = _final_stat(proc.stderr, "number_of_executed_units")
    crashes = sorted(str(p) for p in artifacts.iterdir())
    if proc.returncode != 0 and not crashes:
        crashes = [f"exit {proc.returncode}"]
    reports = re.findall(r"==\d+==ERROR: (?:AddressSanitizer|LeakSanitizer): .*", proc.stderr)
    (workdir / f"log-{target}.txt").write_text(proc.stderr)
    if crashes or reports:
        sys.stderr.write(proc.stderr[-6000:])
    return {"target": target, "engine": "atheris-native" if native else "atheris",
            "seconds": round(elapsed, 1), "executions": executions, "jobs": jobs,
            "coverage": _final_cov(proc.stderr), "corpus": len(list(corpus.iterdir())),
            "crashes": crashes, "sanitizer_reports": reports}  # fmt: skip


def merge(native: Native | None, workdir: Path, into: Path) -> None:
    """Minimise each target's grown corpus (and what ``into`` holds) into ``into/TARGET``."""
    for grown in sorted(workdir.glob("corpus-*")):
        target = grown.name.removeprefix("corpus-")
        final = into / target
        merged = workdir / f"merged-{target}"
        shutil.rmtree(merged, ignore_errors=True)
        merged.mkdir()
        launcher = child_command(native.python if native else sys.executable, target, workdir)
        dirs = [str(merged), str(grown)] + ([str(final)] if final.is_dir() else [])
        # Edges only (not hit counts): the smallest corpus that keeps what was reached.
        subprocess.run([*launcher, "-merge=1", "-use_counters=0", f"-max_len={MAX_LEN}", *dirs],
                       cwd=ROOT, env=child_env(launcher[0], native), check=True,
                       capture_output=True, timeout=3600)  # fmt: skip
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir(parents=True)
        for path in merged.iterdir():
            shutil.copy(path, final / path.name)
        print(f"{target}: {len(list(final.iterdir()))} inputs in {final}")


def _final_cov(stderr: str) -> int:
    """The last ``cov:`` figure libFuzzer printed (edges seen, Python and native)."""
    found = re.findall(r"\bcov: (\d+)", stderr)
    return int(found[-1]) if found else 0


def _final_stat(stderr: str, name: str) -> int:
    m = re.search(rf"stat::{name}:\s*(\d+)", stderr)
    if m:
        return int(m.group(1))
    # Status lines: "#4096 pulse ..." in one process, "#582157: cov: ..." in fork mode (--jobs).
    runs = re.findall(r"^#(\d+):?\s", stderr, re.MULTILINE)
    return int(runs[-1]) if runs else 0


# -- the fallback: seeded random mutations, in process -----------------------------------------

INTERESTING = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b"\x00", b"0", b"\r\n\r\n",
               b"Content-Length: ", b"Transfer-Encoding: chunked", b"Host: a", b"HTTP/1.1",
               b"HTTP/1.0", b"ffffffffffffffff", b"\xff", b"GET / ", b",chunked"]  # fmt: skip


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randint(0, len(out))
        if op == 0 and out:
            del out[pos : pos + rng.randint(1, 8)]
        elif op == 1:
            out[pos:pos] = rng.choice(INTERESTING)
        elif op == 2 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 3:
            other = rng.choice(pool)
            cut = rng.randint(0, len(other))
            out[pos:] = other[cut:]
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(out[:MAX_LEN])


def run_random(target: str, seconds: int, workdir: Path, seed: int) -> dict:
    from tests.fuzz import targets

    fn = targets.TARGETS[target]
    pool = [p.read_bytes() for p in corpus_files()]
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    executions = 0
    crashes: list[str] = []
    while time.monotonic() < deadline and not crashes:
        data = mutate(rng, rng.choice(pool), pool)
        executions += 1
        try:
            fn(data)
        except Exception:  # noqa: BLE001 -- any exception out of a target is a finding
            path = workdir / f"crash-{target}-{executions}"
            path.write_bytes(data)
            crashes.append(str(path))
            traceback.print_exc()
    return {"target": target, "engine": "random", "seconds": seconds,
            "executions": executions, "crashes": crashes}  # fmt: skip


def replay(paths: list[str]) -> int:
    from tests.fuzz import targets

    failed = 0
    for path in paths:
        data = Path(path).read_bytes()
        for name, fn in targets.TARGETS.items():
            try:
                fn(data)
            except Exception:  # noqa: BLE001 -- reported per input, then the next one
                failed += 1
                print(f"{path}: {name}: FAILED")
                traceback.print_exc()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        atheris_child(argv[1], argv[3:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30, help="per target (default 30)")
    parser.add_argument("--target", choices=[*TARGET_NAMES, "all"], default="all")
    parser.add_argument("--engine", choices=["atheris", "random"], default=None,
                        help="default: atheris if installed, else random")
    parser.add_argument("--seed", type=int, default=1, help="random engine seed")
    parser.add_argument("--workdir", default=None, help="default: a new temporary directory")
    parser.add_argument("--replay", nargs="+", metavar="FILE")
    parser.add_argument("--native", action="store_true",
                        help="instrument the compiled extension too (clang, ASan; see above)")
    parser.add_argument("--native-venv", default=str(ROOT / "build" / "fuzz-native"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the --native build")
    parser.add_argument("--jobs", type=int, default=1, help="atheris: processes per target")
    parser.add_argument("--merge", metavar="DIR", default=None,
                        help="after the runs, minimise the grown corpora into DIR/TARGET")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    engine = args.engine or ("atheris" if _has_atheris() else "random")
    native = Native(Path(args.native_venv), args.rebuild) if args.native else None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="palfrey-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    targets = TARGET_NAMES if args.target == "all" else [args.target]
    results = []
    for target in targets:
        if engine == "atheris":
            results.append(run_atheris(target, args.seconds, workdir, native, args.jobs))
        else:
            results.append(run_random(target, args.seconds, workdir, args.seed))
    if args.merge:
        merge(native, workdir, Path(args.merge))
    print(f"workdir: {workdir}")
    for result in results:
        print(json.dumps(result))
    return 1 if any(r["crashes"] or r.get("sanitizer_reports") for r in results) else 0


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
