"""A conformant WebSocket echo server: the upstream for conformance tests and benchmarks.

    python -m chatrelay.echo [--listen ENDPOINT] [--no-compression]
"""

import argparse
import sys

from twisted.application import strports
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

from chatrelay import closecodes

closecodes.allow_receiving_1014()
log = Logger(namespace="chatrelay.echo")


def no_delay(transport):
    """Set TCP_NODELAY on a transport (through TLS too).

    Autobahn 26.10's Twisted adapter calls setTcpNoDelay(self.tcpNoDelay) before the option is
    copied from the factory, and swallows the AttributeError, so Nagle stays on. A relay writes
    each message as frames plus a small final frame, and Nagle then holds that frame back for
    the peer's delayed ACK: about 40 ms per message.
    """
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):
        pass  # not a TCP transport (tests' in-memory ones)


class EchoProtocol(WebSocketServerProtocol):
    """Sends every message back as it came: text as text, binary as binary."""

    def connectionMade(self):
        """Twisted API: Nagle off (Autobahn's own attempt comes too early to work)."""
        super().connectionMade()
        no_delay(self.transport)

    def onMessage(self, payload, isBinary):
        """IWebSocketChannel API."""
        self.sendMessage(payload, isBinary)


def accept_deflate(offers):
    """Accept the first permessage-deflate offer."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def make_factory(compression=True):
    """An echo factory with no size limits and RFC-strict failure codes."""
    factory = WebSocketServerFactory(server=None)
    factory.protocol = EchoProtocol
    options = dict(failByDrop=False, webStatus=False, allowNullOrigin=True, closeHandshakeTimeout=5)
    if compression:
        options["perMessageCompressionAccept"] = accept_deflate
    factory.setProtocolOptions(**options)
    return factory


def main(argv=None):
    """Run the echo server until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="tcp:9001:interface=127.0.0.1")
    parser.add_argument("--no-compression", action="store_true")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    service = strports.service(args.listen, make_factory(not args.no_compression), reactor=reactor)
    service.startService()
    reactor.run()


if __name__ == "__main__":
    main()
