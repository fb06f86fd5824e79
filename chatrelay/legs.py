"""Autobahn adapters: the browser leg (a server protocol) and its upstream leg (a client protocol).

They translate Autobahn callbacks into calls on the plain objects in gate.py, upstream.py,
relay.py and report.py, and implement the small leg interface relay.py documents.

Browser-visible contract (see README): a refused request still completes the handshake and is
then closed with 4401 (key), 4400 (target not a URL) or 4403 (target not allowed); an upstream
that cannot be opened gives 1014 with a reason; otherwise the 101 is sent only once the
upstream leg is open.
"""

from twisted.internet import defer

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny

from chatrelay import closecodes
from chatrelay.compression import browser_options as browser_compression
from chatrelay.compression import upstream_options as upstream_compression
from chatrelay.clients import ClientAddresses
from chatrelay.gate import Refusal
from chatrelay.http import Routes, parse_plain_request, wants_upgrade
from chatrelay.limits import Limits
from chatrelay.metrics import RelayMetrics
from chatrelay.relay import BROWSER, NOWHERE, UPSTREAM, Relay
from chatrelay.report import ConnectionReport, LegClose
from chatrelay.upstream import UpstreamAttempt, UpstreamFailure, endpoint_for

closecodes.allow_receiving_1014()

_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSING = WebSocketProtocol.STATE_CLOSING
_CONNECTING = WebSocketProtocol.STATE_CONNECTING


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


class BrowserLeg(LegMixin, WebSocketServerProtocol):
    """The browser's connection to the relay."""

    report = None
    client = None
    _admitted = False
    _refusal = None
    _attempt = None
    _upstream = None
    _head_timer = None

    def connectionMade(self):
        """Twisted API."""
        super().connectionMade()
        self.factory.live.add(self)
        self._head_timer = self.factory.reactor.callLater(
            self.factory.limits.handshake_timeout, self._head_timed_out
        )

    def connectionLost(self, reason):
        """Twisted API."""
        self._stop_head_timer()
        super().connectionLost(reason)
        if self._admitted:
            self.factory.limits.release(self.client)
        self.factory.forget(self)

    # The request head: bounded in size and time, and plain HTTP served without an upgrade.

    def dataReceived(self, data):
        """Twisted API: refuse a request head that cannot be acceptable, before buffering it."""
        if self._head_timer is not None:
            problem = self.factory.limits.inspect_head(self.data + data)
            if problem is not None:
                self._stop_head_timer()
                self.failHandshake(problem.reason, problem.status)
                return
        super().dataReceived(data)

    def processHandshake(self):
        """Autobahn API: requests without Upgrade are answered here, the rest by Autobahn."""
        end = self.data.find(b"\r\n\r\n")
        if end >= 0 and self._head_timer is not None:
            self._stop_head_timer()
            if not wants_upgrade(self.data[:end]):
                return self._serve_plain(self.data[: end + 4])
        return super().processHandshake()

    def _serve_plain(self, head):
        request = parse_plain_request(head)
        if request is None:
            return self.failHandshake("Bad Request", 400)
        request.client = self._resolve_client(request.headers.get("x-forwarded-for"))
        response = self.factory.routes.respond(request)
        self.sendData(response.encode(head_only=request.method == "HEAD"))
        self.wasClean = True  # a complete HTTP exchange, not a failed WebSocket
        self.dropConnection(abort=False)

    def _head_timed_out(self):
        self._head_timer = None
        self.wasNotCleanReason = "no complete request head in time"
        self.dropConnection(abort=True)

    def _stop_head_timer(self):
        if self._head_timer is not None and self._head_timer.active():
            self._head_timer.cancel()
        self._head_timer = None

    def _resolve_client(self, forwarded_for):
        return self.factory.clients.resolve(self.transport.getPeer().host, forwarded_for)

    # The WebSocket handshake.

    def onConnect(self, request):
        """IWebSocketServerChannel API: admit, then open the upstream before answering."""
        self.client = self._resolve_client(request.headers.get("x-forwarded-for"))
        tcp_peer = self.transport.getPeer()
        self.report = ConnectionReport(
            self.factory.reactor, self.client, f"{tcp_peer.host}:{tcp_peer.port}", self.factory.metrics.ended
        )
        try:
            self.factory.limits.admit(self.client)
            self._admitted = True
            target = self.factory.gate.admit(request.params, request.headers.get("origin"))
        except Refusal as refusal:
            return self._accept_for_refusal(refusal, request)
        self.report.target = target.origin
        self.relay = Relay(self.factory.reactor, self.factory.close_timeout, self.report,
                           self.factory.limits.idle_timeout)
        self._attempt = self.factory.open_upstream(target, request.protocols, self.relay)
        opened = self._attempt.result
        opened.addCallbacks(self._upstream_opened, self._upstream_failed, errbackArgs=(request,))
        return opened

    def _upstream_opened(self, upstream):
        self._attempt = None
        if self.state != _CONNECTING:
            upstream.sendCloseFrame(closecodes.GOING_AWAY, b"browser went away")
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "browser went away")
        self.report.upstream_opened()
        self.factory.metrics.handshake("relayed", 101)
        self._upstream = upstream
        return upstream.websocket_protocol_in_use

    def _upstream_failed(self, failure, request):
        self._attempt = None
        failure.trap(UpstreamFailure, defer.CancelledError)
        if self.state != _CONNECTING:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "browser went away")
        if failure.check(defer.CancelledError):
            refusal = Refusal(closecodes.GOING_AWAY, "relay shutting down", "shutdown")
        else:
            refusal = Refusal(closecodes.BAD_GATEWAY, failure.value.reason, "upstream_failed")
        self.relay = None
        return self._accept_for_refusal(refusal, request)

    def _accept_for_refusal(self, refusal, request):
        # Accept, so that browser JavaScript can read the close code (an HTTP status it
        # cannot). Echo a requested subprotocol: a browser fails a handshake without one.
        self._refusal = refusal
        self.report.set_outcome(refusal.outcome)
        self.factory.metrics.handshake(refusal.outcome, refusal.code)
        return request.protocols[0] if request.protocols else None

    def onOpen(self):
        """IWebSocketChannel API."""
        if self._refusal is not None:
            self.sendCloseFrame(self._refusal.code, self._refusal.reason.encode("utf-8")[:123])
        else:
            self.relay.join(self, self._upstream)
            self.factory.metrics.joined(self.report)

    def onClose(self, wasClean, code, reason):
        """IWebSocketChannel API."""
        if self._attempt is not None:
            self._attempt.result.cancel()
        if self.report is None:
            return  # never got as far as a WebSocket request
        if self.relay is not None:
            self.relay.lost(self)
        self.report.set_outcome("browser_left")
        self.report.leg_closed(BROWSER, LegClose.of(self, wasClean))

    def dropConnection(self, abort=False):
        """Autobahn API: after a clean closing handshake, close TCP gracefully.

        Autobahn's server aborts (RST) once the browser answered a close the relay sent, and
        browsers then report the close as not clean (CloseEvent.wasClean false).
        """
        if abort and self.wasClean and self.state == _CLOSING:
            abort = False
        super().dropConnection(abort)

    def shut_down(self):
        """The relay is stopping: close this connection with 1001, whatever its stage."""
        if self.state == _CONNECTING and self._attempt is not None:
            self._attempt.result.cancel()
        elif self.state == _CONNECTING:
            self.dropConnection(abort=True)
        elif self.relay is not None:
            self.relay.shut_down()


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


class RelayServerFactory(WebSocketServerFactory):
    """Accepts browsers; each connection gets its own upstream leg."""

    protocol = BrowserLeg

    def __init__(self, reactor, gate, settings, connect_timeout, trust_root, limits=None,
                 clients=None, routes=None, metrics=None, connect=None):
        super().__init__(server=None, reactor=reactor)
        self.gate = gate
        self.settings = settings
        self.close_timeout = settings.close_timeout
        self.connect_timeout = connect_timeout
        self.trust_root = trust_root
        self.limits = limits or Limits()
        self.clients = clients or ClientAddresses()
        self.routes = routes or Routes()
        self.metrics = metrics or RelayMetrics()
        self._connect = connect or self._connect_endpoint
        self.live = set()
        self._idle_waiters = []
        self.setProtocolOptions(
            webStatus=False,
            allowNullOrigin=True,  # Origin is checked by the Gate, against --allow-origin
            # Covers the HTTP request and the whole upstream attempt; batched timers fire
            # up to a second early, hence the margin.
            openHandshakeTimeout=connect_timeout + 5,
            **settings.browser_options,
        )

    def open_upstream(self, target, protocols, relay):
        """Start an UpstreamAttempt for `target` on behalf of `relay`."""
        factory = UpstreamFactory(target, protocols, relay, self.settings)
        return self._connect(target, factory)

    def _connect_endpoint(self, target, factory):
        endpoint = endpoint_for(self.reactor, target, self.trust_root, self.connect_timeout)
        return UpstreamAttempt(self.reactor, endpoint, factory, self.connect_timeout)

    def shut_down(self):
        """Close every connection with 1001; fires when all are gone."""
        for leg in list(self.live):
            leg.shut_down()
        return self.when_idle()

    def when_idle(self):
        """A Deferred that fires once no browser connection is left."""
        if not self.live:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def forget(self, leg):
        """A browser connection is gone."""
        self.live.discard(leg)
        if not self.live:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
