"""The vendored llhttp is the pinned, unmodified release, and nothing turns on leniency."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor" / "llhttp"


def read_manifest() -> tuple[list[str], list[tuple[str, str]]]:
    lines = (VENDOR / "VERSION").read_text().splitlines()
    header: list[str] = []
    entries: list[tuple[str, str]] = []
    in_hashes = False
    for line in lines:
        if not in_hashes:
            header.append(line)
            if line.strip() == "sha256:":
                in_hashes = True
            continue
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-f]{64})  (\S.*)", line)
        assert m, f"bad manifest line {line!r}"
        entries.append((m.group(1), m.group(2)))
    assert in_hashes, "VERSION has no 'sha256:' section"
    return header, entries


def test_version_line():
    header, _ = read_manifest()
    assert header[0].strip() == "llhttp 9.4.3", header


def test_version_matches_header_macros():
    header, _ = read_manifest()
    major, minor, patch = re.fullmatch(r"llhttp (\d+)\.(\d+)\.(\d+)", header[0].strip()).groups()
    text = (VENDOR / "include" / "llhttp.h").read_text()

    def macro(name: str) -> str:
        m = re.search(rf"#define\s+{name}\s+(\d+)", text)
        assert m, name
        return m.group(1)

    assert (
        macro("LLHTTP_VERSION_MAJOR"),
        macro("LLHTTP_VERSION_MINOR"),
        macro("LLHTTP_VERSION_PATCH"),
    ) == (major, minor, patch)


def test_manifest_lists_the_sources():
    _, entries = read_manifest()
    paths = {p for _, p in entries}
    for required in ("include/llhttp.h", "src/api.c", "src/http.c", "src/llhttp.c"):
        assert required in paths, paths


@pytest.mark.parametrize("digest,path", read_manifest()[1], ids=[p for _, p in read_manifest()[1]])
def test_file_sha256(digest, path):
    f = VENDOR / path
    assert f.is_file(), f
    assert hashlib.sha256(f.read_bytes()).hexdigest() == digest, path


def test_no_lenient_flags_anywhere_in_src_tree():
    # Strict mode only: nothing under src/ (sources, stubs, generated C) may even mention
    # llhttp's lenient switches. Compiled objects have their own test, below.
    offenders = [
        str(f.relative_to(ROOT))
        for f in (ROOT / "src").rglob("*")
        if f.is_file() and f.suffix not in {".so", ".pyc"} and b"set_lenient" in f.read_bytes()
    ]
    assert offenders == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setup.py drops them with GNU ld")
def test_the_built_module_does_not_contain_the_lenient_setters():
    # llhttp's api.c defines llhttp_set_lenient_*; nothing calls them, and the link drops
    # them (setup.py), so not even a symbol or a debug string of them ships.
    import palfrey._parser

    built = Path(palfrey._parser.__file__).read_bytes()
    if b"__asan_init" in built:
        pytest.skip("a PALFREY_SANITIZE build keeps every function and its debug info")
    assert b"set_lenient" not in built
