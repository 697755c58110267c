"""The real-framework apps of the benchmark: what users run, served by every ASGI server alike.

    benchmarks.frameworks.starlette_app:app   GET /json -> {"message":"Hello, world!"} (JSONResponse)
    benchmarks.frameworks.fastapi_app:app     GET /json as above; POST /items: a pydantic body
                                              model, validated and answered as JSON
    benchmarks.frameworks.django_app:app      GET /json: an async Django view (JsonResponse)
    benchmarks.frameworks.static_app:app      Starlette StaticFiles at /static/ over static_dir()
                                              (64k.bin, 1m.bin); it sends http.response.pathsend
                                              when the server lists that extension in the scope

Each also answers GET / with the 13-byte "Hello, world!" that the harness probes for. This
package's __init__ imports no framework: a server imports only the one it serves.
"""

import hashlib
import os
import tempfile
from pathlib import Path

HELLO = b"Hello, world!"
JSON_HELLO = b'{"message":"Hello, world!"}'
# The body of the fastapi-post scenario (201 bytes); the answer echoes the model with a total.
ITEM = (b'{"name":"Palfrey saddle","description":"Leather, hand-stitched, for a small horse",'
        b'"price":129.5,"tax":10.36,"tags":["leather","tack","saddle"],"quantity":3,'
        b'"in_stock":true}')
ITEM_ANSWER_KEYS = ("name", "description", "price", "tax", "tags", "quantity", "in_stock", "total")
STATIC_FILES = {"64k.bin": 64 * 1024, "1m.bin": 1024 * 1024}


def static_dir() -> Path:
    """The directory of the static scenario's files, made once per machine (same bytes each
    time: they are derived from their names, so every server and run sends the same)."""
    root = Path(os.environ.get("PALFREY_BENCH_STATIC") or Path(tempfile.gettempdir()) / "palfrey-bench-static")
    root.mkdir(parents=True, exist_ok=True)
    for name, size in STATIC_FILES.items():
        path = root / name
        if not path.exists() or path.stat().st_size != size:
            data = b"".join(hashlib.sha256(f"{name}:{i}".encode()).digest() for i in range(size // 32))
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
    return root


def static_bytes(name: str) -> bytes:
    return (static_dir() / name).read_bytes()
