"""Limits that keep one client, or a flood of them, from hurting the others."""

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache, partial

from chatrelay import closecodes
from chatrelay.clients import ip_address
from chatrelay.gate import Refusal

# Each makes a new Refusal to raise (see gate.BAD_KEY).
AT_CAPACITY = partial(Refusal, closecodes.TRY_AGAIN_LATER, "relay at capacity", "over_capacity")
CLIENT_AT_CAPACITY = partial(
    Refusal, closecodes.TRY_AGAIN_LATER, "too many connections from this address", "over_client_limit"
)

_METHOD = re.compile(rb"[A-Z]{1,16} ")
_METHOD_SO_FAR = re.compile(rb"[A-Z]{0,16}\Z")


@dataclass(frozen=True)
class HeadProblem:
    """Why a request head is refused before it is parsed: HTTP status and reason."""

    status: int
    reason: str


NOT_HTTP = HeadProblem(400, "Bad Request")
HEAD_TOO_LARGE = HeadProblem(431, "Request Header Fields Too Large")
LINE_TOO_LONG = HeadProblem(414, "URI Too Long")


def client_key(client):
    """What the per-client limit counts `client` as: its address, or for IPv6 its /64, which
    a single host commonly holds whole (and can pick addresses from at will)."""
    if ":" not in client:
        return client
    return _ipv6_key(client)


@lru_cache(maxsize=4096)
def _ipv6_key(client):
    # Remembered for the last 4,096 clients: a connection asks four times (its TCP peer when
    # its head is counted and given back, its client when admitted and released), and each
    # answer costs an address parse.
    address = ip_address(client)
    if address is None:
        return client
    if address.version == 4:  # an IPv4 client of a dual-stack listener (::ffff:a.b.c.d)
        return str(address)
    return f"{ipaddress.IPv6Address(int(address) >> 64 << 64)}/64"


class Slots:
    """Connections counted in all and per key, each count with its own cap."""

    def __init__(self, in_all, per_key):
        self.in_all = in_all
        self.per_key = per_key
        self.total = 0
        self.by_key = Counter()

    def full(self, key):
        """Which cap one more connection for `key` would exceed: "all", "key", or None.
        A key of None is counted in all only."""
        if self.total >= self.in_all:
            return "all"
        if key is not None and self.by_key[key] >= self.per_key:
            return "key"
        return None

    def take(self, key):
        """Count one more connection for `key`."""
        self.total += 1
        if key is not None:
            self.by_key[key] += 1

    def give_back(self, key):
        """A connection counted for `key` is no longer counted."""
        self.total -= 1
        if key is not None:
            self.by_key[key] -= 1
            if not self.by_key[key]:
                del self.by_key[key]


class Limits:
    """Connection counts (total and per client address) and request-head bounds.

    Two counts, each bounded by max_connections in all and max_per_client per address:
    connections still sending their request head (by TCP peer, as nothing else is known yet;
    a trusted proxy's are counted in the total only), and admitted browser connections (by
    client address, X-Forwarded-For's behind a trusted proxy).
    """

    def __init__(self, max_connections=10000, max_per_client=32, handshake_timeout=10.0,
                 idle_timeout=300.0, max_head_bytes=8192, max_request_line=4096):
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_head_bytes = max_head_bytes
        self.max_request_line = max_request_line
        self.admitted = Slots(max_connections, max_per_client)
        self.heads = Slots(max_connections, max_per_client)

    @property
    def total(self):
        """Admitted browser connections."""
        return self.admitted.total

    def start_head(self, peer):
        """Count a connection whose request head is still to come, from TCP peer `peer` (None
        for a trusted proxy); False when over a limit: the relay drops it at once."""
        key = None if peer is None else client_key(peer)
        if self.heads.full(key):
            return False
        self.heads.take(key)
        return True

    def end_head(self, peer):
        """A connection counted by start_head(peer) has sent its head, or is gone."""
        self.heads.give_back(None if peer is None else client_key(peer))

    def admit(self, client):
        """Count a browser connection from `client`, or raise Refusal (1013) when over a limit."""
        key = client_key(client)
        full = self.admitted.full(key)
        if full == "all":
            raise AT_CAPACITY()
        if full == "key":
            raise CLIENT_AT_CAPACITY()
        self.admitted.take(key)

    def release(self, client):
        """An admitted connection from `client` is gone."""
        self.admitted.give_back(client_key(client))

    def inspect_head(self, head):
        """A HeadProblem if the bytes received so far cannot be an acceptable request head."""
        if not _METHOD.match(head):
            if len(head) > 17 or not _METHOD_SO_FAR.match(head):
                return NOT_HTTP  # junk, or TLS spoken to a plain port: no need to wait
            return None
        end = head.find(b"\r\n\r\n")
        if (end if end >= 0 else len(head)) > self.max_head_bytes:
            return HEAD_TOO_LARGE
        line_end = head.find(b"\r\n")
        if (line_end if line_end >= 0 else len(head)) > self.max_request_line:
            return LINE_TOO_LONG
        return None
