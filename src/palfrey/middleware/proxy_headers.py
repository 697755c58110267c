"""Proxy headers (SPEC.md section 6): believe X-Forwarded-* only from trusted peers.

With ``--proxy-headers`` (the default, as Uvicorn) a request whose peer is trusted by
``--forwarded-allow-ips`` has its ``client`` taken from X-Forwarded-For and its ``scheme``
from X-Forwarded-Proto. X-Forwarded-For is walked from the right: each proxy appends the
address it saw, so the right-most address that is not itself a trusted proxy is the
client; the entries left of it were written by that client and prove nothing.

Trust: IP addresses, CIDR networks and other literals (a unix socket path); ``*`` trusts
every peer. On a unix socket the peer has no address: it is trusted when the list names
the socket's path or is ``*``, and the X-Forwarded-For hops are still judged against the
addresses in the list (with ``*`` alone on a unix socket that is the right-most hop, the
one the proxy itself wrote).

Beyond Uvicorn, opt-in and under the same trust rule:
  ``forwarded_host``:    X-Forwarded-Host replaces the ``host`` header (and the ``server``
                         host), X-Forwarded-Port the port of both;
  ``forwarded_rfc7239``: RFC 7239 ``Forwarded`` (for=, proto=, host=); when present it is
                         used instead of the X-Forwarded-* headers.

This runs on every request, so it is a plain function, not a coroutine: it rewrites the
scope and returns the inner app's awaitable (no extra frame), and it returns at once when
the peer is untrusted or the request carries none of the headers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from palfrey.config import DEFAULT_FORWARDED_ALLOW_IPS
from palfrey.protocols.common import TOKEN_CHARS

_XFF = b"x-forwarded-for"
_XFP = b"x-forwarded-proto"
_XFH = b"x-forwarded-host"
_XFPORT = b"x-forwarded-port"
_FORWARDED = b"forwarded"

_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEME = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# A host[:port] as it may appear in a Host header (RFC 9110 7.2): reg-name or IPv4, or a
# bracketed IPv6 literal, and an optional port. Anything else is ignored, never copied.
_HOST_RE = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

# RFC 7239 section 4: forwarded-pair = token "=" value; value = token / quoted-string.
_TOKEN = "[" + re.escape(TOKEN_CHARS) + "]+"
_PAIR_RE = re.compile(rf"\s*({_TOKEN})=({_TOKEN}|\"(?:[^\"\\]|\\.)*\")\s*([;,]|$)")

# Bound on cached trust decisions (one per distinct peer address).
_CACHE_SIZE = 4096


def parse_trusted(value: Iterable[str] | str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def parse_host_port(value: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1`` -> (host, port or 0)."""
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, 0
        host, rest = value[1:end], value[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return host, 0
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        if port.isdigit():
            return host, int(port)
    return value, 0


class TrustedHosts:
    """The parsed --forwarded-allow-ips: addresses, networks, literals, or everything."""

    def __init__(self, trusted: Iterable[str] | str) -> None:
        items = parse_trusted(trusted)
        self.always = "*" in items
        self.addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.literals: set[str] = set()
        for item in items:
            if item == "*":
                continue
            try:
                if "/" in item and not item.startswith("/"):
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(item))
            except ValueError:
                self.literals.add(item)  # e.g. a unix socket path
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: str | None) -> bool:
        if self.always:
            return True
        return self.listed(host)

    def listed(self, host: str | None) -> bool:
        """Named by the list (``*`` aside): the test for X-Forwarded-For hops."""
        if not host:
            return False
        cached = self._cache.get(host)
        if cached is None:
            cached = self._compute(host)
            if len(host) <= 253:  # never pin huge garbage keys
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                self._cache[host] = cached
        return cached

    def _compute(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
        return ip in self.addresses or any(ip in net for net in self.networks)

    def client_index(self, hops: list[str], *, star_trusts_hops: bool) -> int:
        """Index of the client in a proxy chain (left = farthest from us): the right-most
        hop that is not a trusted proxy; when every hop is trusted, the left-most one
        (Uvicorn's rule for a chain of trusted proxies). ``*`` trusts every hop only when
        ``star_trusts_hops`` (TCP peers, as Uvicorn); otherwise hops are judged against
        the listed addresses alone."""
        if self.always and star_trusts_hops:
            return 0
        for i in range(len(hops) - 1, -1, -1):
            if not self.listed(parse_host_port(hops[i])[0]):
                return i
        return 0


def parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 ``Forwarded`` -> one dict per element (left to right); None if malformed."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    pos = 0
    value = value.strip()
    while pos < len(value):
        match = _PAIR_RE.match(value, pos)
        if match is None:
            return None
        name, raw, sep = match.group(1).lower(), match.group(2), match.group(3)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        current[name] = raw
        pos = match.end()
        if sep != ";":
            elements.append(current)
            current = {}
    if current:
        elements.append(current)
    return elements


class ProxyHeadersMiddleware:
    def __init__(
        self,
        app: Any,
        trusted_hosts: Iterable[str] | str = DEFAULT_FORWARDED_ALLOW_IPS,
        *,
        forwarded_host: bool = False,
        forwarded_rfc7239: bool = False,
        unix_socket_path: str | None = None,
    ) -> None:
        self.app = app
        self.trusted = TrustedHosts(trusted_hosts)
        self.forwarded_host = forwarded_host
        self.forwarded_rfc7239 = forwarded_rfc7239
        # A unix socket peer (scope["client"] is None) is trusted for "*" or its path.
        self.unix_peer_trusted = self.trusted.always or (
            unix_socket_path is not None and unix_socket_path in self.trusted.literals
        )
        names = {_XFF, _XFP}
        if forwarded_host:
            names |= {_XFH, _XFPORT}
        if forwarded_rfc7239:
            names.add(_FORWARDED)
        self.names = frozenset(names)
        self._peer_trust: dict[str, bool] = {}

    def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        # The hot path: one dict lookup for the peer, one pass over the header names.
        client = scope.get("client")
        if client is not None:
            trusted = self._peer_trust.get(client[0])
            if trusted is None:
                trusted = self._learn_peer(client[0])
            if trusted:
                names = self.names
                for name, _ in scope["headers"]:
                    if name in names:
                        self._apply(scope, unix=False)
                        break
        elif self.unix_peer_trusted and scope["type"] != "lifespan":
            self._apply(scope, unix=True)
        return self.app(scope, receive, send)

    def _learn_peer(self, host: str) -> bool:
        trusted = host in self.trusted
        if len(self._peer_trust) >= _CACHE_SIZE:
            self._peer_trust.clear()  # bounded: a scan from many addresses cannot grow it
        self._peer_trust[host] = trusted
        return trusted

    def _apply(self, scope: dict, unix: bool) -> None:
        names = self.names
        found: dict[bytes, list[bytes]] | None = None
        for name, value in scope["headers"]:
            if name in names:
                if found is None:
                    found = {}
                found.setdefault(name, []).append(value)
        if found is None:
            return
        # "*" on TCP trusts every hop (Uvicorn); on a unix socket it trusts the peer only.
        star_trusts_hops = not unix
        if self.forwarded_rfc7239 and _FORWARDED in found:
            self._apply_forwarded(scope, found[_FORWARDED], star_trusts_hops)
            return

        proto = found.get(_XFP)
        if proto is not None:
            # The last header wins, as Uvicorn; only a plain scheme name is accepted.
            self._set_scheme(scope, proto[-1].decode("latin-1").strip().lower())
        xff = found.get(_XFF)
        if xff is not None:
            hops = [h.strip() for h in b",".join(xff).decode("latin-1").split(",")]
            hops = [h for h in hops if h]
            if hops:  # an empty header sets nothing
                i = self.trusted.client_index(hops, star_trusts_hops=star_trusts_hops)
                scope["client"] = parse_host_port(hops[i])
        if self.forwarded_host:
            host = found.get(_XFH)
            port = found.get(_XFPORT)
            self._set_host(
                scope,
                host[-1].decode("latin-1").split(",")[-1].strip() if host else None,
                port[-1].decode("latin-1").split(",")[-1].strip() if port else None,
            )

    def _apply_forwarded(self, scope: dict, values: list[bytes], star_trusts_hops: bool) -> None:
        elements = parse_forwarded(",".join(v.decode("latin-1") for v in values))
        if not elements:
            return  # absent or malformed: believe nothing from it
        hops = [element.get("for", "unknown") for element in elements]
        element = elements[self.trusted.client_index(hops, star_trusts_hops=star_trusts_hops)]
        host, port = parse_host_port(element.get("for", "unknown"))
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass  # "unknown" or an obfuscated "_name" (RFC 7239 6.3): no usable address
        else:
            scope["client"] = (host, port)
        if "proto" in element:
            self._set_scheme(scope, element["proto"].strip().lower())
        if "host" in element:
            self._set_host(scope, element["host"].strip(), None)

    @staticmethod
    def _set_scheme(scope: dict, proto: str) -> None:
        if proto in _SCHEMES:
            scope["scheme"] = (
                _WS_SCHEME[proto] if scope["type"] == "websocket" else _HTTP_SCHEME[proto]
            )

    @staticmethod
    def _set_host(scope: dict, host: str | None, port: str | None) -> None:
        """Make the request look as addressed to ``host`` (and ``port``): rewrite the
        ``host`` header in place and ``scope["server"]``. Invalid values are ignored."""
        if host is not None and not _HOST_RE.fullmatch(host):
            host = None
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            port = None
        if host is None and port is None:
            return
        headers = list(scope["headers"])  # a copy: the scope's list may be the connection's
        index = next((i for i, (n, _) in enumerate(headers) if n == b"host"), None)
        if host is None:
            if index is None:
                return
            host = headers[index][1].decode("latin-1")
        name, number = parse_host_port(host)
        if port is not None:
            number = int(port)
        bracketed = f"[{name}]" if ":" in name else name
        value = f"{bracketed}:{number}" if number else bracketed
        if index is None:
            headers.append((b"host", value.encode("latin-1")))
        else:
            headers[index] = (b"host", value.encode("latin-1"))
        scope["headers"] = headers
        scope["server"] = (name, number or _DEFAULT_PORT.get(scope.get("scheme", "http"), 80))
