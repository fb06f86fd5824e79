"""What both legs share, and the upstream leg (an Autobahn client protocol); the browser leg is in
server.py.

The legs translate Autobahn callbacks into calls on the plain objects in relay.py, upstream.py
and report.py, and implement the small leg interface relay.py documents.
"""

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol

from chatrelay import closecodes
from chatrelay.compression import browser_options as browser_compression
from chatrelay.compression import upstream_options as upstream_compression
from chatrelay.relay import NOWHERE, UPSTREAM
from chatrelay.report import LegClose

closecodes.allow_receiving_1014()

_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSING = WebSocketProtocol.STATE_CLOSING


def _valid_utf8(raw):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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


class LegMixin:
    """What both legs share: frame-level forwarding, pass-through pings, end-to-end close."""

    relay = None
    outbound = NOWHERE
    reading_paused = False
    _deferred_close = None
    _own_ping = None

    def connectionMade(self):
        """Twisted API: turn Nagle off, as Autobahn means to but does not (see no_delay)."""
        super().connectionMade()
        no_delay(self.transport)

    def leg_open(self):
        """Whether data may be sent on this leg (not `is_open`: Autobahn owns that name)."""
        return self.state == _OPEN

    # Data: forward each received chunk as one complete frame (never whole messages).

    def onMessageBegin(self, isBinary):
        """IWebSocketChannel API."""
        WebSocketProtocol.onMessageBegin(self, isBinary)
        self.outbound.begin(isBinary)

    def onMessageFrameBegin(self, length):
        """IWebSocketChannel API: the base class enforces the size limits here."""
        WebSocketProtocol.onMessageFrameBegin(self, length)

    def onMessageFrameData(self, payload):
        """IWebSocketChannel API."""
        self.outbound.data(payload)

    def onMessageFrameEnd(self):
        """IWebSocketChannel API: nothing to do (the base class would buffer the frame)."""

    def onMessageEnd(self):
        """IWebSocketChannel API."""
        self.outbound.end()

    # Pings and pongs pass through; the relay's own keepalive pongs stop here.

    def onPing(self, payload):
        """IWebSocketChannel API: forwarded; the pong comes from the other side."""
        self.outbound.ping(payload)

    def onPong(self, payload):
        """IWebSocketChannel API."""
        if payload == self._own_ping:
            self._own_ping = None
        else:
            self.outbound.pong(payload)

    def _sendAutoPing(self):
        WebSocketProtocol._sendAutoPing(self)
        self._own_ping = self.autoPingPending

    def onAutoPingTimeout(self):
        """A keepalive went unanswered: a dead peer, unless the relay stopped reading it."""
        if self.reading_paused:
            # Its pong may be waiting unread behind data the other leg cannot take yet.
            self.autoPingTimeoutCall = None
            self.autoPingPending = None
            self._sendAutoPing()
            return
        WebSocketProtocol.onAutoPingTimeout(self)

    # Closing.

    def onCloseFrame(self, code, reasonRaw):
        """Forward a peer's close to the other side; answer it once the other side answered."""
        if (
            self.state == _OPEN
            and self.relay is not None
            and closecodes.forwardable(code)
            and (reasonRaw is None or _valid_utf8(reasonRaw))
            and self.relay.close_received(self, code, reasonRaw)
        ):
            self._deferred_close = (code, reasonRaw)
            self.remoteCloseCode = code
            self.remoteCloseReason = reasonRaw.decode("utf-8") if reasonRaw is not None else None
            return None
        was_closing = self.state == _CLOSING
        result = WebSocketProtocol.onCloseFrame(self, code, reasonRaw)
        if was_closing and self.relay is not None:
            self.relay.close_answered(self)
        return result

    def answer_close(self):
        """Reply to the close this leg deferred (echoing its code), as Autobahn would have."""
        deferred, self._deferred_close = self._deferred_close, None
        if deferred is not None and self.state == _OPEN:
            WebSocketProtocol.onCloseFrame(self, *deferred)

    def _fail_connection(self, code=closecodes.GOING_AWAY, reason="going away"):
        if self.relay is not None and self.state in (_OPEN, _CLOSING):
            self.relay.failed(self, code, reason)
        WebSocketProtocol._fail_connection(self, code, reason)

    def connectionLost(self, reason):
        """Twisted API: keep the cause, which Autobahn reduces to a string."""
        self.lost_reason = reason.value
        super().connectionLost(reason)


class UpstreamLeg(LegMixin, WebSocketClientProtocol):
    """The relay's connection to the upstream (Binance) for one browser."""

    lost_reason = None

    def onOpen(self):
        """IWebSocketChannel API."""
        self.factory.attempt.opened(self)

    def onClose(self, wasClean, code, reason):
        """IWebSocketChannel API."""
        if self.relay is None:  # not joined: failed, or its browser left meanwhile
            self.factory.attempt.closed_before_open(self.lost_reason, self.wasNotCleanReason)
            return
        self.relay.lost(self)
        self.relay.report.leg_closed(UPSTREAM, LegClose.of(self, wasClean))


class LegSettings:
    """Protocol options for the two legs, from the command line."""

    def __init__(self, max_message_size, close_timeout, ping_interval, ping_timeout, compression="none"):
        self.options = dict(
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            failByDrop=False,
            echoCloseCodeReason=True,
            closeHandshakeTimeout=close_timeout,
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            autoPingRestartOnAnyTraffic=True,
            utf8validateIncoming=True,
        )
        self.browser_options = dict(self.options, **browser_compression(compression))
        self.upstream_options = dict(self.options, **upstream_compression(compression))
        self.close_timeout = close_timeout


class UpstreamFactory(WebSocketClientFactory):
    """Builds the one upstream leg for one browser connection."""

    protocol = UpstreamLeg

    def __init__(self, target, protocols, relay, settings):
        super().__init__(url=target.url, protocols=protocols or None, useragent="chatrelay")
        self.relay = relay
        self.attempt = None
        # The relay's own deadline bounds the upstream handshake (UpstreamAttempt).
        self.setProtocolOptions(openHandshakeTimeout=0, **settings.upstream_options)
