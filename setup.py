"""The one compiled extension: palfrey._parser (Cython) linked with the vendored llhttp C."""

from Cython.Build import cythonize
from setuptools import Extension, setup

LLHTTP = "vendor/llhttp"

parser = Extension(
    "palfrey._parser",
    sources=[
        "src/palfrey/_parser.pyx",
        f"{LLHTTP}/src/api.c",
        f"{LLHTTP}/src/http.c",
        f"{LLHTTP}/src/llhttp.c",
    ],
    include_dirs=[f"{LLHTTP}/include"],
    extra_compile_args=["-O3"],
)

setup(
    ext_modules=cythonize(
        [parser],
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
)
