"""Build Palfrey's extension under clang sanitizers into a virtualenv of its own, and say what
to preload to run it (tests/sanitize.py, ``python -m tests.fuzz --native``).

The source is copied (tracked files plus uncommitted edits) to ``VENV/src`` and installed
from there, so the build never touches the work tree's own ``build/`` or in-place module.
Needs clang and its runtime (Debian: ``apt-get install clang libclang-rt-dev``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLANG = os.environ.get("CC", "clang")


def clang_file(name: str) -> Path:
    """A file of clang's runtime, e.g. ``libclang_rt.asan-x86_64.so``; exits if missing."""
    out = subprocess.run([CLANG, f"-print-file-name={name}"], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    if not os.path.isabs(out) or not os.path.exists(out):
        sys.exit(f"{name} not found: install clang's runtime (apt-get install libclang-rt-dev)")
    return Path(out)


def asan_runtime() -> Path:
    return clang_file("libclang_rt.asan-x86_64.so")


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def build(venv: Path, sanitize: str, rebuild: bool = False) -> Path:
    """Make ``venv`` (if needed) with Palfrey built under ``-fsanitize=<sanitize>`` and the
    test extras; return its python. Rebuilt when asked, or when the flags or sources differ."""
    stamp = venv / "palfrey-sanitize"
    wanted = f"{sanitize} {source_digest()}"
    if not rebuild and stamp.exists() and stamp.read_text() == wanted:
        return python_of(venv)
    if shutil.which(CLANG) is None:
        sys.exit(f"{CLANG} not found: apt-get install clang libclang-rt-dev")
    asan_runtime()
    if not python_of(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    src = venv / "src"
    shutil.rmtree(src, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    env = dict(os.environ, PALFREY_SANITIZE=sanitize, CC=CLANG)
    # A local directory is always rebuilt and reinstalled.
    subprocess.run([str(python_of(venv)), "-m", "pip", "install", "-q", f"{src}[test]"],
                   env=env, check=True)  # fmt: skip
    stamp.write_text(wanted)
    return python_of(venv)


def source_digest() -> str:
    """sha256 of what the build is made of (setup.py, src/, vendor/): a change rebuilds."""
    digest = hashlib.sha256()
    paths = [ROOT / "setup.py", *(ROOT / "src").rglob("*"), *(ROOT / "vendor").rglob("*")]
    for path in sorted(paths):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".so", ".c"):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def libfuzzer_runtime(venv: Path) -> Path:
    """libFuzzer without its main(), as a shared library to preload after ASan's runtime:
    atheris then drives it ("Using preloaded libfuzzer") and sees the extension's edges."""
    lib = venv / "libfuzzer_no_main.so"
    if not lib.exists():
        archive = clang_file("libclang_rt.fuzzer_no_main-x86_64.a")
        subprocess.run([CLANG, "-shared", "-o", str(lib), "-Wl,--whole-archive", str(archive),
                        "-Wl,--no-whole-archive", "-lstdc++", "-lm", "-lpthread"], check=True)  # fmt: skip
    return lib
