"""Upstream targets: strict parsing of the browser's target URL and the allowlist it must match.

A target is hostile input. It is parsed with a deliberately narrow grammar (ASCII only, ws or
wss, no userinfo, no fragment, no percent-encoded dots or slashes and no `;` in the path) so
that what the allowlist checks is exactly what the relay later connects to.
"""

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"ws": 80, "wss": 443}
DEFAULT_ALLOWLIST = ("wss://im.binance.com:443/chat/",)

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)\Z")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+\Z")
_ENCODED_SEPARATORS = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
_PORT = re.compile(r"[0-9]{1,5}\Z")


class TargetError(ValueError):
    """The target is missing or is not a WebSocket URL the relay will parse."""


@dataclass(frozen=True)
class Target:
    """A parsed upstream WebSocket URL; `url` is exactly what the browser sent."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    query: str = ""

    @property
    def secure(self):
        """Whether the upstream leg uses TLS."""
        return self.scheme == "wss"

    @property
    def resource(self):
        """The path and query, as the upstream request line carries them."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def origin(self):
        """scheme://host:port: what may be logged about the target (no path, no query)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def normalise_host(host):
    """Return the canonical form of a URL host, or raise TargetError.

    Names are lower-cased LDH labels (one trailing dot dropped); IP literals must be canonical
    dotted quads or bracketed IPv6, so numeric tricks like 127.1 or 0x7f.0.0.1 are refused.
    """
    if host.startswith("[") and host.endswith("]"):
        if "%" in host:
            raise TargetError("IPv6 zone in host")
        try:
            return ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            raise TargetError("bad IPv6 literal") from None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            raise TargetError("non-canonical IP address") from None
        if str(address) != host:
            raise TargetError("non-canonical IP address")
        return host
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise TargetError("bad host name")
    return host


def _split_authority(netloc):
    """Split host[:port] (host possibly a bracketed IPv6 literal) into its parts."""
    if netloc.startswith("["):
        host, bracket, rest = netloc.partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise TargetError("bad IPv6 literal")
        return host + "]", rest[1:] if rest else None
    host, colon, port = netloc.partition(":")
    return host, port if colon else None


def _parse_port(text, scheme, wildcard=False):
    """The port number, the scheme's default when absent, or None for a '*' wildcard."""
    if text is None:
        return DEFAULT_PORTS[scheme]
    if wildcard and text == "*":
        return None
    if not _PORT.match(text) or not 0 < int(text) < 65536:
        raise TargetError("bad port")
    return int(text)


def _check_path(path):
    """Refuse paths whose meaning an upstream could change by normalising them.

    A `;` starts path parameters: Autobahn's URL parser drops them from the last segment
    (`/chat/..;x` would be requested as `/chat/..`), and some servers read `..;` as `..`.
    """
    if _ENCODED_SEPARATORS.search(path) or "\\" in path:
        raise TargetError("encoded separator in path")
    if ";" in path:
        raise TargetError("parameters in path")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise TargetError("dot segment in path")


def _split_url(text, what):
    """urlsplit with the checks shared by targets and patterns."""
    if not text or not _PRINTABLE_ASCII.match(text):
        raise TargetError(f"{what} is empty or not printable ASCII")
    if "#" in text:
        raise TargetError(f"{what} has a fragment")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise TargetError(f"{what} is not a URL") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise TargetError(f"{what} scheme must be ws or wss")
    if not text.lower().startswith(parts.scheme + "://") or not parts.netloc:
        raise TargetError(f"{what} has no host")
    if "@" in parts.netloc:
        raise TargetError(f"{what} has userinfo")
    return parts


def parse_target(text):
    """Parse the browser's target into a Target, or raise TargetError."""
    parts = _split_url(text, "target")
    host, port = _split_authority(parts.netloc)
    path = parts.path or "/"
    _check_path(path)
    return Target(
        url=text,
        scheme=parts.scheme,
        host=normalise_host(host),
        port=_parse_port(port, parts.scheme),
        path=path,
        query=parts.query,
    )


@dataclass(frozen=True)
class TargetPattern:
    """One allowlist entry: scheme://host[:port|:*][/path-prefix]."""

    scheme: str
    host: str
    port: int | None  # None: any port
    path_prefix: str

    def matches(self, target):
        """Whether the target is allowed by this entry."""
        return (
            target.scheme == self.scheme
            and target.host == self.host
            and (self.port is None or target.port == self.port)
            and self._path_matches(target.path)
        )

    def _path_matches(self, path):
        prefix = self.path_prefix
        if not prefix or prefix.endswith("/"):
            return path.startswith(prefix)
        return path == prefix or path.startswith(prefix + "/")

    def __str__(self):
        port = "*" if self.port is None else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}{self.path_prefix}"


def parse_pattern(text):
    """Parse an --allow-target pattern, or raise TargetError."""
    parts = _split_url(text, "pattern")
    if parts.query:
        raise TargetError("pattern has a query")
    host, port = _split_authority(parts.netloc)
    path = parts.path if parts.path not in ("", "/") else ""
    _check_path(path)
    return TargetPattern(
        scheme=parts.scheme,
        host=normalise_host(host),
        port=_parse_port(port, parts.scheme, wildcard=True),
        path_prefix=path,
    )


class Allowlist:
    """The targets the relay may open, as a list of TargetPatterns."""

    def __init__(self, patterns):
        self.patterns = tuple(patterns)

    @classmethod
    def from_strings(cls, texts):
        """Build from pattern strings (the defaults when none are given)."""
        return cls(parse_pattern(text) for text in (texts or DEFAULT_ALLOWLIST))

    def allows(self, target):
        """Whether any entry matches the target."""
        return any(pattern.matches(target) for pattern in self.patterns)

    def __str__(self):
        return ", ".join(str(pattern) for pattern in self.patterns)
