"""Distribution (SPEC.md section 9): the sdist, the cibuildwheel matrix, the wheels workflow.

The wheels themselves are built, repaired and checked installed by scripts/build_wheels.py
(too slow for every run); here: what the sdist carries and that it builds with only a C
compiler, the identifiers cibuildwheel selects from pyproject.toml, and the GitHub Actions
workflow that runs it elsewhere (parsed, checked against the workflow schema that
check-jsonschema bundles, and read for what it must do).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.common import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"
PYPROJECT = ROOT / "pyproject.toml"
EXPECTED_IDENTIFIERS = {
    f"cp{v}-{libc}_{arch}"
    for v in ("311", "312", "313")
    for libc in ("manylinux", "musllinux")
    for arch in ("x86_64", "aarch64")
}


def load_build_wheels():
    spec = importlib.util.spec_from_file_location("build_wheels", ROOT / "scripts/build_wheels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


# -- the sdist ----------------------------------------------------------------------------


def build_sdist(out: Path) -> Path:
    """``python -m build --sdist`` of a copy of the tracked files: the build writes its
    egg-info next to the sources, and other runs of the suite may be using this tree."""
    tree = out / "tree"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(tree)],
                   check=True, capture_output=True, timeout=300, env=clean_env())
    (path,) = out.glob("palfrey-*.tar.gz")
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sdist_carries_the_sources_and_builds_with_only_a_c_compiler(tmp_path):
    sdist = build_sdist(tmp_path)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = tar.extractfile(f"{sdist.name[:-7]}/PKG-INFO").read().decode()
        version = tar.extractfile(f"{sdist.name[:-7]}/vendor/llhttp/VERSION").read()
    for required in load_build_wheels().SDIST_REQUIRED:
        assert required in names, required
    assert version == (ROOT / "vendor/llhttp/VERSION").read_bytes()
    # Cython output is made at build time; nothing compiled or generated ships.
    assert not [n for n in names if n.endswith((".so", ".pyc", "_parser.c"))]
    assert "License-Expression: BSD-3-Clause AND MIT" in pkg_info
    for licence in ("LICENSE", "vendor/llhttp/LICENSE", "vendor/llhttp/LICENSE-MIT"):
        assert f"License-File: {licence}" in pkg_info

    # A fresh venv, without Cython: pip fetches the build requirements (in isolation, so
    # the venv's own old setuptools on 3.11 plays no part) and compiles with the machine's
    # cc. Then cibuildwheel's smoke test.
    assert shutil.which("cc"), "no C compiler"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = clean_env(PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    for name in ("VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    listed = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True,
                            env=env, timeout=120).stdout.lower()
    assert "cython" not in listed, listed
    install = subprocess.run([str(python), "-m", "pip", "install", str(sdist)],
                             capture_output=True, text=True, env=env, timeout=540)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    cwd = tmp_path / "empty"
    cwd.mkdir()
    smoke = subprocess.run([str(python), str(ROOT / "scripts/wheel_smoke.py")], cwd=cwd,
                           capture_output=True, text=True, env=env, timeout=120)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert f"from {venv}" in smoke.stdout and "ok  WebSocket /ws echo" in smoke.stdout


# -- cibuildwheel -------------------------------------------------------------------------


def cibuildwheel_identifiers(**env: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform",
         "linux"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=clean_env(**env),
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_cibuildwheel_selects_cpython_311_to_313_manylinux_and_musllinux_on_two_archs():
    assert cibuildwheel_identifiers() == EXPECTED_IDENTIFIERS


def test_cibuildwheel_config_builds_old_manylinux_and_runs_the_smoke_test():
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["cibuildwheel"]
    # manylinux2014 images give manylinux_2_17 wheels (SPEC section 9).
    assert config["manylinux-x86_64-image"] == config["manylinux-aarch64-image"] == "manylinux2014"
    assert config["test-sources"] == ["scripts/wheel_smoke.py"]
    assert config["test-command"] == "python scripts/wheel_smoke.py"
    assert all((ROOT / s).is_file() for s in config["test-sources"])


# -- the GitHub Actions workflow ----------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_workflow_is_valid_against_the_github_workflow_schema():
    out = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(WORKFLOW)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    broken = WORKFLOW.read_text().replace("runs-on:", "runs-onn:", 1)
    bad = Path(os.environ.get("TMPDIR", "/tmp")) / f"wheels-broken-{os.getpid()}.yml"
    bad.write_text(broken)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
             "vendor.github-workflows", str(bad)], capture_output=True, text=True, timeout=120)
    finally:
        bad.unlink()
    assert out.returncode != 0, "the schema check cannot fail"


def _steps(job: dict) -> list[dict]:
    return job["steps"]


def test_workflow_builds_wheels_per_arch_with_the_pinned_cibuildwheel(workflow):
    jobs = workflow["jobs"]
    wheels = jobs["wheels"]
    matrix = wheels["strategy"]["matrix"]["include"]
    assert {entry["arch"] for entry in matrix} == {"x86_64", "aarch64"}
    # aarch64 on a native arm runner, not under emulation.
    assert {entry["arch"]: entry["os"] for entry in matrix}["aarch64"].endswith("-arm")
    assert wheels["env"]["CIBW_ARCHS"] == "${{ matrix.arch }}"
    text = "\n".join(s.get("run", "") for s in _steps(wheels))
    pin = re.search(r"cibuildwheel==([\d.]+)", text)
    assert pin, text
    # The version whose identifiers this suite checked is the one CI installs.
    assert pin.group(1) == importlib.metadata.version("cibuildwheel")
    assert "python -m cibuildwheel --output-dir wheelhouse" in text
    uploads = [s for s in _steps(wheels) if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "wheelhouse/*.whl"
    for entry in matrix:
        assert cibuildwheel_identifiers(CIBW_ARCHS=entry["arch"]) == {
            i for i in EXPECTED_IDENTIFIERS if i.endswith(entry["arch"])}


def test_workflow_builds_and_checks_the_sdist(workflow):
    sdist = workflow["jobs"]["sdist"]
    text = "\n".join(s.get("run", "") for s in _steps(sdist))
    assert "python -m build --sdist" in text
    assert "pip install dist/palfrey-" in text and "wheel_smoke.py" in text
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in _steps(sdist))
    assert set(workflow["on"]) >= {"push", "pull_request", "workflow_dispatch"}
