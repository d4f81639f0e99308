"""Broker URLs (``mqtt://host[:port]``, ``mqtts://host[:port]``) and the TLS files of a link."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""

    def bad(why: str) -> ValueError:
        return ValueError(f"bad broker URL {url!r}: {why} (expected mqtt://host[:port] or mqtts://host[:port])")

    if not isinstance(url, str):
        raise bad("not a string")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise bad(f"unsupported scheme {parts.scheme!r}" if parts.scheme else "no scheme")
    if parts.username is not None or parts.password is not None:
        raise bad("credentials do not belong in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("unexpected path, query or fragment")
    if not parts.hostname:
        raise bad("no host")
    if not _resolvable_name(parts.hostname):
        raise bad(f"{parts.hostname!r} is not a host name (labels of 1-63 characters, 253 in all) or an IP address")
    try:
        port = parts.port
    except ValueError:
        raise bad("invalid port") from None
    if port == 0:
        raise bad("invalid port")
    return BrokerUrl(parts.hostname, port or DEFAULT_PORTS[scheme], scheme == "mqtts")


def _resolvable_name(host: str) -> bool:
    """Whether the resolver can take ``host``: an IP address, or a name whose labels encode
    (IDNA), each 1-63 characters, 253 in all; anything else fails in getaddrinfo."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        return False
    labels = encoded.rstrip(b".").split(b".")
    return len(encoded) <= 253 and all(1 <= len(label) <= 63 for label in labels)


@dataclass(frozen=True)
class TlsFiles:
    """Server verification (``ca``) and the ATM's own certificate (mutual TLS)."""

    ca: str
    cert: str = ""
    key: str = ""

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key or None)
        return ctx
