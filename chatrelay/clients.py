"""Who a connection really comes from, when it arrives through trusted proxies."""

import ipaddress

UNIX = "unix"  # the peer of a connection on a Unix socket, which has no IP address


def peer_host(address):
    """The host of a connection's peer address: its IP address, or UNIX."""
    return getattr(address, "host", None) or UNIX


def peer_label(address):
    """A connection's peer address for the log: host:port, or UNIX."""
    host = peer_host(address)
    return UNIX if host == UNIX else f"{host}:{address.port}"


def parse_networks(texts):
    """IP networks from addresses or CIDR blocks ("127.0.0.1", "10.0.0.0/8", "::1"), or UNIX
    for the peers of Unix sockets."""
    return tuple(
        UNIX if text.strip() == UNIX else ipaddress.ip_network(text.strip(), strict=False) for text in texts
    )


def ip_address(text):
    """The IP address in `text` (IPv4 for an IPv4-mapped IPv6 address), or None."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if getattr(address, "scope_id", None):  # fe80::1%eth0: the zone says nothing of the client
        address = ipaddress.IPv6Address(int(address))
    # An IPv4 client of a dual-stack listener appears as ::ffff:a.b.c.d.
    return getattr(address, "ipv4_mapped", None) or address


def _within(address, networks):
    return any(network != UNIX and address in network for network in networks)


def in_networks(text, networks):
    """Whether the address `text` (or UNIX) lies in any of `networks`."""
    if text == UNIX:
        return UNIX in networks
    address = ip_address(text)
    return address is not None and _within(address, networks)


class ClientAddresses:
    """Resolves a connection's client address, trusting X-Forwarded-For only from trusted proxies."""

    def __init__(self, trusted_proxies=(), max_remembered=1024):
        self.trusted = parse_networks(trusted_proxies)
        self.max_remembered = max_remembered
        self._trusts = {}  # TCP peer: whether it is a trusted proxy (a few proxies, asked per connection)

    def trusts(self, tcp_peer):
        """Whether `tcp_peer` is a trusted proxy."""
        if not self.trusted:
            return False
        trusted = self._trusts.get(tcp_peer)
        if trusted is None:
            if len(self._trusts) >= self.max_remembered:
                self._trusts.clear()
            trusted = self._trusts[tcp_peer] = in_networks(tcp_peer, self.trusted)
        return trusted

    def resolve(self, tcp_peer, forwarded_for):
        """The client's address: the TCP peer, or, when that is a trusted proxy, the rightmost
        X-Forwarded-For entry that is not itself a trusted proxy."""
        if forwarded_for is None or not self.trusts(tcp_peer):
            return tcp_peer
        for hop in reversed(forwarded_for.split(",")):
            address = ip_address(hop)
            if address is None:
                return tcp_peer  # a forged or garbled header: fall back to what we know
            if not _within(address, self.trusted):
                return str(address)
        return tcp_peer
