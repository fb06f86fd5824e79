"""A plain relay on Autobahn's two protocol classes: a benchmark reference point, not a relay to deploy.

    python bench/autobahn-plain/relay.py --port PORT [--allow-prefix ws://127.0.0.1:]

Autobahn used as documented, without chatrelay's cuts: a WebSocketServerProtocol checks the key
and the target's prefix in onConnect, opens a WebSocketClientProtocol to the target (a client
factory per connection, as Autobahn's examples make them), answers the browser once that is
open, relays each whole message with sendMessage, and passes a close code and reason on once
its own leg has closed. Autobahn's defaults otherwise (UTF-8 validated, no compression, a 1 s
closing-handshake timeout, garbage collection as Python sets it), except: automatic pings off,
no opening-handshake timeout, messages up to 1 MiB. No limits per client, metrics, keepalive,
logs, hardening of the head or frame-level forwarding. It is not transparent:
bench/load/check.js fails it on the close code round trip (Autobahn answers a close itself,
with 1000) and on invalid UTF-8 (Autobahn drops the TCP connection, 1006, rather than closing
with 1007). bench/ab.py runs it as `--src autobahn-plain`, with the first chatrelay tree given to
ab.py on its path, so on chatrelay's reactor; without chatrelay, on Twisted's epoll reactor.
"""

import argparse
import hmac
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reference_reactor import install  # noqa: E402

install()

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
    connectWS,
)
from autobahn.websocket.types import ConnectionDeny  # noqa: E402
from twisted.internet import defer, reactor  # noqa: E402

TOKEN = os.environ["BINANCE_PROXY_TOKEN"].encode()
OPTIONS = dict(autoPingInterval=0, openHandshakeTimeout=0, maxMessagePayloadSize=1 << 20)


def passed_on(code):
    """The close code to send on: what sendClose accepts (1000, 3000-4999), else 1000."""
    return code if code == 1000 or (code is not None and 3000 <= code <= 4999) else 1000


class Upstream(WebSocketClientProtocol):
    """The relay's leg to the target."""

    browser = None

    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        if self.browser is not None:
            self.browser.sendMessage(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionDeny(502, "upstream failed"))
        elif self.browser is not None:
            self.browser.upstream = None
            self.browser.sendClose(passed_on(code), reason or None)


class UpstreamFactory(WebSocketClientFactory):
    """One upstream connection for one browser; `opened` fires with the open leg."""

    protocol = Upstream

    def __init__(self, target):
        super().__init__(target)
        self.setProtocolOptions(**OPTIONS)
        self.opened = defer.Deferred()

    def clientConnectionFailed(self, connector, reason):
        self.opened.errback(ConnectionDeny(502, "upstream unreachable"))


class Browser(WebSocketServerProtocol):
    """The browser's leg: opens its upstream before answering the handshake."""

    upstream = None

    def onConnect(self, request):
        key, target = request.params.get("key", [""])[0], request.params.get("target", [""])[0]
        if not hmac.compare_digest(key.encode(), TOKEN):
            raise ConnectionDeny(401)
        if not target.startswith(self.factory.allow_prefix):
            raise ConnectionDeny(403)
        factory = UpstreamFactory(target)
        factory.opened.addCallback(self._upstream_open)
        connectWS(factory, timeout=10)
        return factory.opened

    def _upstream_open(self, upstream):
        if self.state == self.STATE_CLOSED:  # the browser left meanwhile
            upstream.sendClose(1000)
            return None
        upstream.browser = self
        self.upstream = upstream
        return None  # accept, no subprotocol

    def onMessage(self, payload, isBinary):
        if self.upstream is not None:
            self.upstream.sendMessage(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        if self.upstream is not None:
            self.upstream.browser = None
            self.upstream.sendClose(passed_on(code), reason or None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--allow-prefix", default="ws://127.0.0.1:")
    args = parser.parse_args()
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{args.port}")
    factory.protocol = Browser
    factory.allow_prefix = args.allow_prefix
    factory.setProtocolOptions(**OPTIONS)
    reactor.listenTCP(args.port, factory, backlog=511, interface="127.0.0.1")
    print(f"listening on {args.port} with {type(reactor).__module__}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
