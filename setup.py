"""The one compiled extension: palfrey._parser (Cython) linked with the vendored llhttp C.

PALFREY_SANITIZE=<clang -fsanitize list> builds it for testing under sanitizers, with clang
(``$CC``, default ``clang``), ``-O1 -g`` and frame pointers, unstripped:

    PALFREY_SANITIZE=address,undefined       ASan + UBSan: python -m tests.sanitize
    PALFREY_SANITIZE=fuzzer-no-link,address  libFuzzer coverage: python -m tests.fuzz --native

Such a build only loads with the sanitizer runtime preloaded (LD_PRELOAD): never ship it.
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

LLHTTP = "vendor/llhttp"
SANITIZE = os.environ.get("PALFREY_SANITIZE", "").strip()

if SANITIZE:
    # distutils links with $CC too when LDSHARED is not set.
    os.environ.setdefault("CC", "clang")
    COMPILE_ARGS = [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer", "-g", "-O1"]
    if "undefined" in SANITIZE.split(","):
        COMPILE_ARGS.append("-fno-sanitize=function")  # Cython's casts of PyCFunction
    LINK_ARGS = [f"-fsanitize={SANITIZE}", "-shared-libsan"]
elif sys.platform.startswith("linux"):
    # With GNU ld only PyInit__parser is exported, and the llhttp functions the module never
    # calls (among them every llhttp_set_lenient_*: strict parsing only) are dropped at link
    # time, with the debug info that would still name them: 2.6 MB -> 0.4 MB, same speed.
    COMPILE_ARGS = ["-O3", "-fvisibility=hidden", "-ffunction-sections", "-fdata-sections"]
    LINK_ARGS = ["-Wl,--gc-sections", "-Wl,--strip-debug"]
else:
    COMPILE_ARGS, LINK_ARGS = ["-O3"], []

parser = Extension(
    "palfrey._parser",
    sources=[
        "src/palfrey/_parser.pyx",
        f"{LLHTTP}/src/api.c",
        f"{LLHTTP}/src/http.c",
        f"{LLHTTP}/src/llhttp.c",
    ],
    include_dirs=[f"{LLHTTP}/include"],
    extra_compile_args=COMPILE_ARGS,
    extra_link_args=LINK_ARGS,
)

setup(
    ext_modules=cythonize(
        [parser],
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
)
