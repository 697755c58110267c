"""ASGI middleware Config.load() wraps around the user's app, innermost first:

  wsgi / asgi2 adapter -> message logger (--log-level trace only) -> proxy headers.

Each is installed only when its option asks for it, so the default request path pays for
the proxy-headers check alone (and that one returns at once for an untrusted peer).
"""
