"""The one compiled extension: palfrey._parser (Cython) linked with the vendored llhttp C."""

import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

LLHTTP = "vendor/llhttp"

# With GNU ld only PyInit__parser is exported, and the llhttp functions the module never calls
# (among them every llhttp_set_lenient_*: strict parsing only) are dropped at link time, with
# the debug info that would still name them: 2.6 MB -> 0.4 MB, same speed.
GNU_LD = sys.platform.startswith("linux")
GC_COMPILE_ARGS = ["-fvisibility=hidden", "-ffunction-sections", "-fdata-sections"] if GNU_LD else []
GC_LINK_ARGS = ["-Wl,--gc-sections", "-Wl,--strip-debug"] if GNU_LD else []

parser = Extension(
    "palfrey._parser",
    sources=[
        "src/palfrey/_parser.pyx",
        f"{LLHTTP}/src/api.c",
        f"{LLHTTP}/src/http.c",
        f"{LLHTTP}/src/llhttp.c",
    ],
    include_dirs=[f"{LLHTTP}/include"],
    extra_compile_args=["-O3", *GC_COMPILE_ARGS],
    extra_link_args=GC_LINK_ARGS,
)

setup(
    ext_modules=cythonize(
        [parser],
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
)
