"""Fuzz the compiled HTTP/1.1 protocol and the WebSocket data path (targets.py).

    python -m tests.fuzz --seconds 30                    # every target, 30 s each, atheris
    python -m tests.fuzz --target split --seconds 600    # one target, ten minutes
    python -m tests.fuzz --engine random --seconds 30    # no atheris: seeded random mutations
    python -m tests.fuzz --replay FILE...                # run saved inputs through every target

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
TARGET_NAMES = ["protocol", "split", "websocket"]  # targets.TARGETS, without importing it here
# libFuzzer's own deadline per input: anything slower is a hang.
INPUT_TIMEOUT_S = 10


def corpus_files() -> list[Path]:
    return sorted(p for d in (SEEDS, REGRESSIONS) for p in d.iterdir() if p.is_file())


# -- atheris, in a child process ---------------------------------------------------------------


def atheris_child(target_name: str, libfuzzer_args: list[str]) -> None:
    """Runs inside the child: never returns (libFuzzer calls exit)."""
    import atheris

    # wsproto and the WebSocket glue are Python: instrumented, they steer the websocket target.
    with atheris.instrument_imports(include=["tests.fuzz", "wsproto", "palfrey.protocols"]):
        from tests.fuzz import targets
    atheris.Setup([sys.argv[0], *libfuzzer_args], targets.TARGETS[target_name])
    atheris.Fuzz()


def run_atheris(target: str, seconds: int, workdir: Path) -> dict:
    corpus = workdir / f"corpus-{target}"
    corpus.mkdir(parents=True, exist_ok=True)
    for path in corpus_files():
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
    cmd = [sys.executable, "-m", "tests.fuzz", "--child", target, "--", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
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
    if crashes:
        sys.stderr.write(proc.stderr[-6000:])
    return {"target": target, "engine": "atheris", "seconds": round(elapsed, 1),
            "executions": executions, "crashes": crashes}  # fmt: skip


def _final_stat(stderr: str, name: str) -> int:
    m = re.search(rf"stat::{name}:\s*(\d+)", stderr)
    if m:
        return int(m.group(1))
    runs = re.findall(r"#(\d+)\s", stderr)
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
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    engine = args.engine or ("atheris" if _has_atheris() else "random")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="palfrey-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    targets = TARGET_NAMES if args.target == "all" else [args.target]
    results = []
    for target in targets:
        if engine == "atheris":
            results.append(run_atheris(target, args.seconds, workdir))
        else:
            results.append(run_random(target, args.seconds, workdir, args.seed))
    print(f"workdir: {workdir}")
    for result in results:
        print(json.dumps(result))
    return 1 if any(r["crashes"] for r in results) else 0


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
