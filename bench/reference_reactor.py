"""The reactor and the write of the reference relays in bench/NAME/relay.py: chatrelay's when it
is importable (bench/ab.py puts the first chatrelay tree given on their path), so that they differ
from chatrelay in their protocol code only; otherwise Twisted's epoll reactor and plain writes."""

try:
    from chatrelay.reactor import install
    from chatrelay.writes import write_through
except ImportError:
    from twisted.internet.epollreactor import install

    def write_through(transport, data):
        """Twisted's own write, without chatrelay."""
        transport.write(data)

__all__ = ["install", "write_through"]
