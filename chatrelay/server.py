"""The browser leg (an Autobahn server protocol) and the factory that accepts browsers.

Browser-visible contract (README): a refused request still completes the handshake and is then
closed with its code (4401, 4400, 4403, 1013); an upstream that cannot be opened gives 1014 with
a reason; otherwise the 101 is sent only once the upstream leg is open. Requests without an
Upgrade header are plain HTTP (http.py), answered on the same port.
"""

import re

from twisted.internet import defer

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny

from chatrelay import autobahn_costs, closecodes
from chatrelay.clients import ClientAddresses, peer_host, peer_label
from chatrelay.gate import Refusal
from chatrelay.http import (
    Routes,
    forwarded_for,
    offered_subprotocols,
    parse_plain_request,
    request_line_problem,
    wants_upgrade,
)
from chatrelay.keepalive import KeepaliveWheel
from chatrelay.legs import LegMixin, UpstreamFactory
from chatrelay.limits import Limits
from chatrelay.metrics import RelayMetrics
from chatrelay.relay import BROWSER, Relay
from chatrelay.report import ConnectionReport, LegClose
from chatrelay.upstream import UpstreamAttempt, UpstreamEndpoints, UpstreamFailure

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_CLOSING = WebSocketProtocol.STATE_CLOSING
_CONNECTING = WebSocketProtocol.STATE_CONNECTING
REFUSAL_CLOSE_TIMEOUT = 2.0  # seconds a refused browser has to answer the close of its refusal


class BrowserLeg(LegMixin, WebSocketServerProtocol):
    """The browser's connection to the relay."""

    report = None
    client = None
    _admitted = False
    _refusal = None
    _attempt = None
    _upstream = None
    _head_timer = None  # set while the request head is still to come
    _head_peer = None
    _tcp_peer = None  # the transport's peer address (Twisted builds a new one per getPeer)

    def connectionMade(self):
        """Twisted API: a connection over the limits on request heads still to come is dropped
        at once (no request was read to answer)."""
        super().connectionMade()
        self.factory.live.add(self)
        self._tcp_peer = self.transport.getPeer()
        peer = peer_host(self._tcp_peer)
        self._head_peer = None if self.factory.clients.trusts(peer) else peer
        if not self.factory.limits.start_head(self._head_peer):
            self.factory.metrics.handshake("over_head_limit", "none")
            self.wasNotCleanReason = "too many request heads still to come"
            self.dropConnection(abort=True)
            return
        self._head_timer = self.factory.reactor.callLater(
            self.factory.limits.handshake_timeout, self._head_timed_out
        )

    def connectionLost(self, reason):
        """Twisted API."""
        self._head_done()
        super().connectionLost(reason)
        if self._admitted:
            self.factory.limits.release(self.client)
        self.factory.forget(self)
        self.report = None  # which refers to this leg, through its traffic counters (see _let_go)

    # The request head: bounded in size and time, and plain HTTP served without an upgrade.

    def dataReceived(self, data):
        """Twisted API: refuse a request head that cannot be acceptable, before buffering it;
        hold what comes after the head until the 101 is sent."""
        if self._head_timer is not None:
            problem = self.factory.limits.inspect_head(self.data + data)
            if problem is not None:
                self._head_done()
                self.failHandshake(problem.reason, problem.status)
                return
        elif self.state == _CONNECTING and self.report is not None:
            self._hold_early_data(data)
            return
        super().dataReceived(data)

    def _hold_early_data(self, data):
        # The request was read and the upstream is being opened. A client must wait for the
        # 101 before it sends more (RFC 6455, 4.1); what it sends anyway is kept for after the
        # 101, as a proxy would keep it, up to a head's size. It is never read as another
        # request: Autobahn would parse it as one, and admit and connect again.
        self.data += data
        if len(self.data) > self.factory.limits.max_head_bytes:
            self.failHandshake("Bad Request", 400)

    def processHandshake(self):
        """Autobahn API: requests without Upgrade are answered here, the rest by Autobahn (once
        their request line is one it accepts: see http.request_line_problem)."""
        end = self.data.find(b"\r\n\r\n")
        if end >= 0 and self._head_timer is not None:
            self._head_done()
            if not wants_upgrade(self.data[:end]):
                return self._serve_plain(self.data[: end + 4])
            problem = request_line_problem(self.data[:end])
            if problem is not None:
                status, reason = problem
                return self.failHandshake(reason, status)
        return super().processHandshake()

    def failHandshake(self, reason, code=400, responseHeaders=None):
        """Autobahn API: Autobahn's reasons may quote the client's headers, which go into the
        log and the status line: only as printable ASCII, and at most 200 characters of them."""
        super().failHandshake(_UNPRINTABLE.sub("?", reason)[:200], code, responseHeaders)

    def _serve_plain(self, head):
        request = parse_plain_request(head)
        if request is None:
            return self.failHandshake("Bad Request", 400)
        request.client = self._resolve_client(head)
        response = self.factory.routes.respond(request)
        self.sendData(response.encode(head_only=request.method == "HEAD"))
        self.wasClean = True  # a complete HTTP exchange, not a failed WebSocket
        self.dropConnection(abort=False)

    def _head_timed_out(self):
        self._head_done()
        self.wasNotCleanReason = "no complete request head in time"
        self.dropConnection(abort=True)

    def _head_done(self):
        """The request head arrived, was refused, or will not come: stop waiting for it."""
        if self._head_timer is not None:
            if self._head_timer.active():
                self._head_timer.cancel()
            self._head_timer = None
            self.factory.limits.end_head(self._head_peer)

    def _resolve_client(self, head):
        # X-Forwarded-For as the proxy wrote it (see http.forwarded_for); believed only from a
        # trusted proxy (ClientAddresses.resolve).
        return self.factory.clients.resolve(peer_host(self._tcp_peer), forwarded_for(head))

    # The WebSocket handshake.

    def onConnect(self, request):
        """IWebSocketServerChannel API: admit, then open the upstream before answering."""
        protocols = offered_subprotocols(request.protocols)
        if protocols is None:  # refused as Autobahn refuses a malformed header: before admission
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "Sec-WebSocket-Protocol is not a list of tokens")
        self.client = self._resolve_client(self.http_request_data)
        self.report = ConnectionReport(
            self.factory.reactor, self.client, peer_label(self._tcp_peer), self.factory.metrics.ended
        )
        try:
            self.factory.limits.admit(self.client)
            self._admitted = True
            target = self.factory.gate.admit(request.params, request.headers.get("origin"))
        except Refusal as refusal:
            return self._accept_for_refusal(refusal, protocols)
        self.report.target = target.origin
        self.relay = Relay(self.factory.reactor, self.factory.close_timeout, self.report,
                           self.factory.limits.idle_timeout, self.factory.keepalive)
        self._attempt = self.factory.open_upstream(target, protocols)
        opened = self._attempt.result
        opened.addCallbacks(self._upstream_opened, self._upstream_failed, errbackArgs=(protocols,))
        return opened

    def _upstream_opened(self, upstream):
        self._attempt = None
        self.report.upstream_opened()
        upstream.relay = self.relay  # its close is reported, even should the pair never join
        if self.state != _CONNECTING:  # the browser's request was refused meanwhile
            upstream.sendCloseFrame(closecodes.GOING_AWAY, b"browser went away")
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "browser went away")
        self._upstream = upstream
        return upstream.websocket_protocol_in_use

    def _upstream_failed(self, failure, protocols):
        self._attempt = None
        failure.trap(UpstreamFailure, defer.CancelledError)
        if self.state != _CONNECTING:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "browser went away")
        if failure.check(defer.CancelledError):
            refusal = Refusal(closecodes.GOING_AWAY, "relay shutting down", "shutdown")
        else:
            refusal = Refusal(closecodes.BAD_GATEWAY, failure.value.reason, "upstream_failed")
        self.relay = None
        return self._accept_for_refusal(refusal, protocols)

    def _accept_for_refusal(self, refusal, protocols):
        # Accept, so that browser JavaScript can read the close code (an HTTP status it
        # cannot). Echo a requested subprotocol: a browser fails a handshake without one.
        self._refusal = refusal.with_traceback(None)  # its frames would hold this leg in a cycle
        self.report.set_outcome(refusal.outcome)
        self.factory.metrics.handshake(refusal.outcome, refusal.code)
        return protocols[0] if protocols else None

    def onOpen(self):
        """IWebSocketChannel API."""
        self.forget_handshake()
        if self._refusal is not None:
            # A browser answers a close within a round trip: one that does not keeps its slot
            # for REFUSAL_CLOSE_TIMEOUT, not --close-timeout, so that refused connections
            # cannot fill the relay.
            self.closeHandshakeTimeout = min(self.closeHandshakeTimeout, REFUSAL_CLOSE_TIMEOUT)
            self.sendCloseFrame(self._refusal.code, encode_truncate(self._refusal.reason, 123))
        else:
            self.factory.metrics.handshake("relayed", 101)
            self.relay.join(self, self._upstream)
            self.factory.metrics.joined(self.report)

    def onClose(self, wasClean, code, reason):
        """IWebSocketChannel API."""
        if self._attempt is not None:
            self._attempt.result.cancel()
        if self.report is None:
            return  # never got as far as a WebSocket request
        if self._upstream is not None and self.relay.browser is None:
            # The upstream opened, but Autobahn then refused this browser's request (say, an
            # extension offer it cannot parse): the upstream leg must not be left open.
            self.report.set_outcome("bad_request")
            self._upstream.sendCloseFrame(closecodes.GOING_AWAY, b"browser went away")
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


class RelayServerFactory(WebSocketServerFactory):
    """Accepts browsers; each connection gets its own upstream leg."""

    protocol = BrowserLeg

    def __init__(self, reactor, gate, settings, connect_timeout, trust_root, limits=None,
                 clients=None, routes=None, metrics=None, connect=None):
        super().__init__(server=None, reactor=reactor)
        self.gate = gate
        self.settings = settings
        self.close_timeout = settings.close_timeout
        self.keepalive = KeepaliveWheel(reactor, settings.ping_interval, settings.ping_timeout)
        self.connect_timeout = connect_timeout
        self.limits = limits or Limits()
        self.clients = clients or ClientAddresses()
        self.routes = routes or Routes()
        self.metrics = metrics or RelayMetrics()
        self._connect = connect or self._connect_endpoint
        self.live = set()  # browser legs, from accept to connectionLost
        self.upstream_live = set()  # upstream legs, from connect to connectionLost
        self.metrics.count_connections(self.live)
        self._idle_waiters = []
        self._upstream_endpoints = UpstreamEndpoints(reactor, trust_root)
        self._upstream_factory = UpstreamFactory.for_settings(settings)
        self.setProtocolOptions(
            webStatus=False,
            allowNullOrigin=True,  # Origin is checked by the Gate, against --allow-origin
            # Runs from the TCP accept, so it covers the request head (which may take
            # handshake_timeout) and then the whole upstream attempt; batched timers fire up
            # to a second early, hence the margin.
            openHandshakeTimeout=self.limits.handshake_timeout + connect_timeout + 5,
            **settings.browser_options,
        )

    def setProtocolOptions(self, **options):
        """Autobahn API: the options also go to the protocol class (see autobahn_costs)."""
        super().setProtocolOptions(**options)
        self.protocol = autobahn_costs.options_on_class(type(self).protocol, self)

    def open_upstream(self, target, protocols):
        """Start an UpstreamAttempt for `target`."""
        factory = self._upstream_factory(target, protocols, registry=self)
        return self._connect(target, factory)

    def _connect_endpoint(self, target, factory):
        endpoint, tls_sessions = self._upstream_endpoints.for_target(target)
        return UpstreamAttempt(self.reactor, endpoint, factory, self.connect_timeout, tls_sessions)

    def shut_down(self):
        """Close every connection with 1001; fires when all are gone."""
        for leg in list(self.live):
            leg.shut_down()
        return self.when_idle()

    def when_idle(self):
        """A Deferred that fires once no connection is left: no browser leg, and no upstream
        leg (whose browser may have answered a close first)."""
        if not (self.live or self.upstream_live):
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def forget(self, leg):
        """A browser or upstream connection is gone."""
        self.live.discard(leg)
        self.upstream_live.discard(leg)
        if not (self.live or self.upstream_live):
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
