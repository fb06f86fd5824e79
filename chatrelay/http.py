"""Plain HTTP on the relay's port: the few requests that are not WebSocket upgrades, and the
request line of those that are.

Served straight from the browser leg's handshake parser (see BrowserLeg.processHandshake):
one request, one response, then the connection closes.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse, urlsplit

_UPGRADE_HEADER = re.compile(rb"\r\nupgrade:", re.IGNORECASE)
_FORWARDED_FOR = re.compile(rb"\r\nx-forwarded-for:(.*?)(?=\r\n)", re.IGNORECASE | re.DOTALL)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110, 5.6.2
_STATUS_TEXT = {200: "OK", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def wants_upgrade(head):
    """Whether the request head (bytes up to the blank line) has an Upgrade header."""
    return _UPGRADE_HEADER.search(head) is not None


def forwarded_for(head):
    """The request head's X-Forwarded-For lines, joined in order as one list (None without one).

    Read from the head's CRLF-separated lines, as the proxy wrote them. Autobahn's parser also
    breaks lines at bytes such as 0x85 and 0x0b, which nginx passes on inside a header's value:
    to Autobahn, a client's "User-Agent: x<0x85>X-Forwarded-For: <any address>" is one more
    X-Forwarded-For line, after nginx's own.
    """
    lines = _FORWARDED_FOR.findall(head)
    if not lines:
        return None
    return ",".join(line.decode("iso-8859-1") for line in lines)


def offered_subprotocols(values):
    """The Sec-WebSocket-Protocol values offered, as Autobahn split them, without empty list
    elements (RFC 9110, 5.6.1: ignored); None if any other is not a token (RFC 6455, 4.1).

    The relay sends the offered values on to the upstream in its own request; browsers only
    offer tokens.
    """
    offered = [value for value in values if value]
    if all(_TOKEN.fullmatch(value) for value in offered):
        return offered
    return None


def request_line_problem(head):
    """(HTTP status, reason) if Autobahn would refuse this upgrade request's line, else None.

    Autobahn makes the same checks, but puts the line or its URI into the refusal and its log
    lines; the URI carries the relay key or ticket and the target with its listenToken, so the
    relay refuses such lines first, with fixed reasons.
    """
    line = head.decode("iso-8859-1").splitlines()[0].strip()  # as Autobahn's parseHttpHeader
    parts = line.split()
    if len(parts) != 3:
        return 400, "Bad Request"
    method, uri, version = parts
    if method != "GET":
        return 405, "Method Not Allowed"
    if version != "HTTP/1.1":
        return 505, "HTTP Version Not Supported"
    try:
        fragment = urlparse(uri).fragment
    except ValueError:  # such as "Invalid IPv6 URL"
        return 400, "Bad Request"
    if fragment:
        return 400, "Bad Request"
    return None


@dataclass
class PlainRequest:
    """A request without Upgrade: method, path, query, lower-cased headers, client address."""

    method: str
    path: str
    query: dict
    headers: dict
    client: str = None


@dataclass
class Response:
    """What goes back: status, content type, body, extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict = field(default_factory=dict)

    def encode(self, head_only=False):
        """The whole HTTP/1.1 response, closing the connection."""
        lines = [
            f"HTTP/1.1 {self.status} {_STATUS_TEXT.get(self.status, '')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
        ]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def parse_plain_request(head):
    """Parse a request head into a PlainRequest, or None if it is not well formed."""
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, _version = request_line.split(" ")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts = urlsplit(target)
    except ValueError:
        return None
    return PlainRequest(method, parts.path or "/", parse_qs(parts.query), headers)


class Routes:
    """Handlers for plain requests, by path; a path also matches under any prefix (nginx's)."""

    def __init__(self):
        self._handlers = {}

    def add(self, path, handler):
        """Serve `path` (starting with /, e.g. /healthz) with handler(request) -> Response."""
        self._handlers[path] = handler

    def respond(self, request):
        """The Response for a request."""
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
        for path, handler in self._handlers.items():
            if request.path.endswith(path):
                return handler(request)
        return Response(404, b"not found: this is a WebSocket relay\n")
