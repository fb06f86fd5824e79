"""In-memory harness: browser client -> relay -> upstream server, joined with iosim on a Clock."""

import txaio

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)

from chatrelay.credentials import Credentials
from chatrelay.gate import Gate
from chatrelay.legs import LegSettings
from chatrelay.server import RelayServerFactory
from chatrelay.targets import Allowlist
from chatrelay.upstream import UpstreamAttempt

TOKEN = "relay-secret"
UPSTREAM_URL = "ws://upstream.test/chat/c2c_key?token=TOKEN123&clientType=web"


class Recorder:
    """Records what a peer of the relay sees."""

    def connectionMade(self):
        """Twisted API."""
        super().connectionMade()
        self.opened = False
        self.messages = []
        self.pings = []
        self.pongs = []
        self.closed = None
        self.raw = bytearray()

    def dataReceived(self, data):
        """Twisted API: keep the bytes as they came, then parse them as usual."""
        self.raw += data
        super().dataReceived(data)

    def onOpen(self):
        """IWebSocketChannel API."""
        self.opened = True

    def onMessage(self, payload, isBinary):
        """IWebSocketChannel API."""
        self.messages.append((payload, isBinary))

    def onPing(self, payload):
        """IWebSocketChannel API: record, then answer as usual."""
        self.pings.append(payload)
        super().onPing(payload)

    def onPong(self, payload):
        """IWebSocketChannel API."""
        self.pongs.append(payload)

    def onClose(self, wasClean, code, reason):
        """IWebSocketChannel API."""
        self.closed = (wasClean, code, reason)


class BrowserClient(Recorder, WebSocketClientProtocol):
    """A browser, as far as the relay can tell."""


class UpstreamServer(Recorder, WebSocketServerProtocol):
    """The upstream (Binance), as far as the relay can tell."""


class HeldEndpoint:
    """A client endpoint whose connections wait until the test completes them."""

    def __init__(self, harness):
        self.harness = harness

    def connect(self, factory):
        """IStreamClientEndpoint API."""
        connecting = defer.Deferred()
        self.harness.held.append((factory, connecting))
        return connecting


class Harness:
    """One relay factory on a Clock, with helpers to connect browsers and upstreams."""

    def __init__(self, allow=("ws://upstream.test:*/chat/",), max_message_size=1 << 20,
                 connect_timeout=10.0, close_timeout=5.0, ping_interval=0.0, ping_timeout=0.0,
                 origins=(), limits=None, clients=None, compression="none"):
        self.clock = MemoryReactorClock()
        self._saved_loop = txaio.config.loop
        txaio.config.loop = self.clock  # Autobahn's timers ignore the factory's reactor
        self.held = []
        self.pumps = []
        self.connect_timeout = connect_timeout
        settings = LegSettings(max_message_size, close_timeout, ping_interval, ping_timeout, compression)
        self.factory = RelayServerFactory(
            self.clock,
            Gate(Credentials(TOKEN, clock=self.clock.seconds), Allowlist.from_strings(allow), origins),
            settings,
            connect_timeout=connect_timeout,
            trust_root=None,
            limits=limits,
            clients=clients,
            connect=self._connect,
        )
        self.upstream_factory = WebSocketServerFactory()
        self.upstream_factory.protocol = UpstreamServer
        self.upstream_factory.setProtocolOptions(failByDrop=False, echoCloseCodeReason=True)

    def restore(self):
        """Give Autobahn its timers back."""
        txaio.config.loop = self._saved_loop

    def _connect(self, target, factory):
        return UpstreamAttempt(self.clock, HeldEndpoint(self), factory, self.connect_timeout)

    def browser(self, query=None, protocols=None, headers=None, origin=None, peer="192.0.2.7",
                deflate=False):
        """Connect a browser with the given query string (default: good key and target);
        `deflate`: offer permessage-deflate, as browsers do."""
        if query is None:
            query = relay_query()
        factory = WebSocketClientFactory(
            f"ws://relay.test/chat-relay//?{query}", protocols=protocols, headers=headers, origin=origin
        )
        factory.protocol = BrowserClient
        # Browsers answer a close with its own code and reason (Autobahn's default is 1000).
        factory.setProtocolOptions(failByDrop=False, openHandshakeTimeout=0, closeHandshakeTimeout=30,
                                   echoCloseCodeReason=True)
        if deflate:
            factory.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()],
                                       perMessageCompressionAccept=accept_deflate)
        client = factory.buildProtocol(None)
        server = self.factory.buildProtocol(IPv4Address("TCP", peer, 40000))
        self._connect_pair(server, client, peer=peer)
        return client

    def raw(self, peer="192.0.2.8"):
        """A raw TCP client to the relay: (its protocol, its transport); nothing sent yet."""
        from twisted.internet.protocol import Protocol

        client = Protocol()
        client.received = bytearray()
        client.dataReceived = client.received.extend
        server = self.factory.buildProtocol(IPv4Address("TCP", peer, 40001))
        self._connect_pair(server, client, peer=peer)
        return client

    def upstream(self):
        """Complete the oldest pending upstream connection; return the upstream's protocol."""
        factory, connecting = self.held.pop(0)
        leg = factory.buildProtocol(None)
        server = self.upstream_factory.buildProtocol(None)
        self._connect_pair(server, leg, greet=False)
        connecting.callback(leg)
        self.flush()
        return server

    def refuse_upstream(self, reason):
        """Fail the oldest pending upstream connection with `reason` (an exception)."""
        _, connecting = self.held.pop(0)
        connecting.errback(reason)
        self.flush()

    def _connect_pair(self, server, client, greet=True, peer="192.0.2.9"):
        peer_address = IPv4Address("TCP", peer, 40000)
        server_transport = iosim.FakeTransport(server, isServer=True, peerAddress=peer_address)
        pump = iosim.connect(
            server, server_transport, client, iosim.makeFakeClient(client), greet=False, clock=self.clock,
        )
        self.pumps.append(pump)
        if greet:
            self.flush()

    def flush(self):
        """Move bytes on every connection until nothing moves."""
        for _ in range(100):
            if not any([pump.flush() for pump in self.pumps]):
                return
        raise AssertionError("connections never went quiet")

    def advance(self, seconds):
        """Let time pass, then settle."""
        self.clock.advance(seconds)
        self.flush()


def accept_deflate(response):
    """A client's acceptance of the server's permessage-deflate response."""
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def upgrade_request(query=None, extra_headers=""):
    """The bytes of a browser's WebSocket upgrade request to the relay (default: good key and target)."""
    return (
        f"GET /chat-relay/?{relay_query() if query is None else query} HTTP/1.1\r\n"
        "Host: relay.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra_headers}\r\n"
    ).encode("latin-1")


def close_frame_after_101(received):
    """(code, reason) of the first frame after a 101 response, which must be a close."""
    head, _, frames = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert frames[0] == 0x88 and frames[1] < 126, frames[:2]
    payload = frames[2:2 + frames[1]]
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8")


def relay_query(key=TOKEN, target=UPSTREAM_URL):
    """The query string a browser sends."""
    from urllib.parse import urlencode

    params = []
    if key is not None:
        params.append(("key", key))
    if target is not None:
        params.append(("target", target))
    return urlencode(params)
