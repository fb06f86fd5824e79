"""Who a connection really comes from, when it arrives through trusted proxies."""

import ipaddress


def parse_networks(texts):
    """IP networks from addresses or CIDR blocks ("127.0.0.1", "10.0.0.0/8", "::1")."""
    return tuple(ipaddress.ip_network(text.strip(), strict=False) for text in texts)


def _address(text):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def in_networks(text, networks):
    """Whether the address `text` lies in any of `networks`."""
    address = _address(text)
    return address is not None and any(address in network for network in networks)


class ClientAddresses:
    """Resolves a connection's client address, trusting X-Forwarded-For only from trusted proxies."""

    def __init__(self, trusted_proxies=()):
        self.trusted = parse_networks(trusted_proxies)

    def resolve(self, tcp_peer, forwarded_for):
        """The client's address: the TCP peer, or, when that is a trusted proxy, the rightmost
        X-Forwarded-For entry that is not itself a trusted proxy."""
        if forwarded_for is None or not in_networks(tcp_peer, self.trusted):
            return tcp_peer
        for hop in reversed(forwarded_for.split(",")):
            address = _address(hop)
            if address is None:
                return tcp_peer  # a forged or garbled header: fall back to what we know
            if not any(address in network for network in self.trusted):
                return str(address)
        return tcp_peer
