"""What both legs share, and the upstream leg (an Autobahn client protocol); the browser leg is in
server.py.

The legs translate Autobahn callbacks into calls on the plain objects in relay.py, upstream.py
and report.py, and implement the small leg interface relay.py documents.
"""

import struct
import time

import txaio

from autobahn.twisted.util import peer2str
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import WebSocketProtocol

from chatrelay import autobahn_costs, closecodes, fastframes, masking
from chatrelay.compression import browser_options as browser_compression
from chatrelay.compression import upstream_options as upstream_compression
from chatrelay.relay import NOWHERE, UPSTREAM
from chatrelay.report import LegClose
from chatrelay.writes import write_through

closecodes.allow_receiving_1014()
autobahn_costs.defer_debug_formatting()
masking.use_strong_keys_in_autobahn()

_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSING = WebSocketProtocol.STATE_CLOSING
_CLOSED = WebSocketProtocol.STATE_CLOSED
_CLOSE_FRAME = 8  # the opcode


def _nothing(result):
    return None


def _valid_utf8(raw):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class LegMixin:
    """What both legs share: frame-level forwarding, pass-through pings, end-to-end close."""

    relay = None
    outbound = NOWHERE
    reading_paused = False
    _deferred_close = None
    keepalive = None  # the relay's KeepaliveWheel, while the relay pings this leg
    keepalive_seq = 0  # the relay's keepalive pings sent on this leg
    own_ping = None  # the payload of the relay's last keepalive ping on this leg, until answered
    awaiting_pong = False  # whether its pong, or a message instead, is still awaited

    def leg_open(self):
        """Whether data may be sent on this leg (not `is_open`: Autobahn owns that name)."""
        return self.state == _OPEN

    def compressed(self):
        """Whether permessage-deflate is in use on this leg."""
        return self._perMessageCompress is not None

    # Data: a message that arrives whole goes on as one frame; any other, chunk by chunk.

    def onMessageBegin(self, isBinary):
        """IWebSocketChannel API."""
        WebSocketProtocol.onMessageBegin(self, isBinary)
        self.outbound.begin(isBinary)

    def onMessageFrameBegin(self, length):
        """IWebSocketChannel API: the base class enforces the size limits here."""
        WebSocketProtocol.onMessageFrameBegin(self, length)

    def onMessageFrameData(self, payload):
        """IWebSocketChannel API: a message that arrived whole (one frame, read at once) is sent
        on as one frame; anything else is sent on as it arrives, chunk by chunk."""
        frame = self.current_frame
        if (
            frame.fin
            and frame.opcode
            and len(payload) == frame.length
            and not self._isMessageCompressed
            and (not self.utf8validateIncomingCurrentMessage or self.utf8validateLast[1])
        ):
            self.outbound.whole(payload)
        elif (
            frame.fin
            and self.utf8validateIncomingCurrentMessage
            and not self.utf8validateLast[1]
            and not self._isMessageCompressed
            and self.current_frame_masker.pointer() == frame.length
        ):
            pass  # text ending inside a character: Autobahn fails it (1007) as this frame ends
        else:
            self.outbound.data(payload)

    def send_whole(self, payload, is_binary):
        """Send one complete message on this leg (the other leg's size limit already held).

        Not Autobahn's sendMessage: it applies this leg's receive limit to what it sends,
        measured after compression, so deflate's few bytes of overhead would refuse a legal
        message at the limit."""
        if self._perMessageCompress is None:
            self.sendFrame(opcode=2 if is_binary else 1, payload=payload)
        else:
            self.beginMessage(isBinary=is_binary)
            self.sendMessageFrame(payload)
            self.endMessage()

    def onMessageFrameEnd(self):
        """IWebSocketChannel API: a data frame from the peer stands in for an awaited pong
        (the base class would buffer the frame)."""
        if self.awaiting_pong:
            self.keepalive_answered()

    def onMessageEnd(self):
        """IWebSocketChannel API."""
        self.outbound.end()

    # Pings and pongs pass through; the relay's own keepalive pongs stop here.

    def onPing(self, payload):
        """IWebSocketChannel API: forwarded; the pong comes from the other side."""
        self.outbound.ping(payload)

    def onPong(self, payload):
        """IWebSocketChannel API."""
        if payload == self.own_ping:
            self.own_pong_received()
        else:
            self.outbound.pong(payload)

    # The relay's keepalive (Autobahn's own is off): a ping every interval, as Autobahn's would
    # be, on the relay's KeepaliveWheel. A message from the peer stands in for a pong that is
    # awaited (as with Autobahn's autoPingRestartOnAnyTraffic).

    def start_keepalive(self, wheel):
        """Ping this leg every `wheel.interval` from now on (Relay.join)."""
        if wheel.interval:
            self.keepalive = wheel
            wheel.call_after(self, wheel.interval)

    def keepalive_due(self):
        """KeepaliveWheel API: time for the next ping, or the pong awaited is late."""
        if self.state != _OPEN:
            self._stop_keepalive()  # closing: the close handshake's own timeout applies
        elif self.reading_paused and self.own_ping is not None:
            # The relay stopped reading this leg (the other side is slow to take its data), and
            # the last ping's pong may be waiting unread behind that data: the leg is not
            # dropped, nor pinged anew (the pong to a replaced ping would be a stranger's,
            # passed on to the other side). Looked at again a timeout or an interval later.
            self.keepalive.call_after(
                self, self.keepalive.timeout if self.awaiting_pong else self.keepalive.interval)
        elif not self.awaiting_pong:
            self._send_keepalive_ping()
        else:
            self._stop_keepalive()
            self.wasClean = False
            self.wasNotCleanReason = "WebSocket ping timeout (peer did not respond with pong in time)"
            self.dropConnection(abort=True)

    def _send_keepalive_ping(self):
        # The payload Autobahn's keepalive sends: the time sent and a sequence number. The
        # pong's deadline is set first: should the write lose the connection, it is cancelled.
        self.keepalive_seq += 1
        self.own_ping = struct.pack(">QL", time.time_ns(), self.keepalive_seq)
        self.awaiting_pong = True
        if self.keepalive.timeout:
            self.keepalive.call_after(self, self.keepalive.timeout)
        self.sendFrame(opcode=9, payload=self.own_ping)

    def own_pong_received(self):
        """The peer answered the relay's keepalive ping (found by the fast path or onPong)."""
        self.own_ping = None
        if self.awaiting_pong:  # else traffic already stood in for it, and the next ping is due
            self.keepalive_answered()

    def keepalive_answered(self):
        """The pong awaited came, or a message instead: the next ping an interval from now."""
        self.awaiting_pong = False
        self.keepalive.call_after(self, self.keepalive.interval)

    def _stop_keepalive(self):
        """No more keepalive pings on this leg, and none awaited."""
        if self.keepalive is not None:
            self.keepalive.cancel(self)
            self.keepalive = None
        self.awaiting_pong = False

    def sendFrame(self, opcode, payload=b"", fin=True, rsv=0, mask=None, payload_len=None,
                  chopsize=None, sync=False):
        """Autobahn API: a control frame (a close, ping or pong) is framed in one step, masked
        as Autobahn would mask it (Autobahn builds a masker object for each frame it masks);
        any other frame, and any request of Autobahn's fuzzing options, as Autobahn does."""
        masked = self.maskServerFrames if self.factory.isServer else self.maskClientFrames
        if (opcode < 8 or not fin or rsv or mask or payload_len is not None or self.logFrames
                or len(payload) > 125 or (masked and not self.applyMask)):
            return super().sendFrame(opcode, payload, fin, rsv, mask, payload_len, chopsize, sync)
        self.sendData(fastframes.control_frame(opcode, payload, masked), sync, chopsize)

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
            # Nothing may follow a close (RFC 6455, 5.5.1): the rest of this read is dropped
            # unparsed, as is what dataReceived gets from now on, so no pong can answer a
            # keepalive: the keepalive ends here (the close has its own timeout).
            self.data = b""
            self._stop_keepalive()
            self.remoteCloseCode = code
            self.remoteCloseReason = reasonRaw.decode("utf-8") if reasonRaw is not None else None
            return None
        was_closing = self.state == _CLOSING
        result = WebSocketProtocol.onCloseFrame(self, code, reasonRaw)
        if was_closing and self.relay is not None:
            # An invalid answer (a code no one may send, a reason not UTF-8) fails this leg and
            # leaves it not clean: there is then no answer to pass on.
            self.relay.close_answered(self, self.received_close() if self.wasClean else None)
        return result

    def answer_close(self, answer=None):
        """Reply to the close this leg deferred: with `answer`, the (code, reason) the other
        side answered with, or else by echoing it, as Autobahn would have."""
        deferred, self._deferred_close = self._deferred_close, None
        if deferred is None or self.state != _OPEN:
            return
        if answer is None:
            WebSocketProtocol.onCloseFrame(self, *deferred)
            return
        # Autobahn's onCloseFrame for an open leg (the peer's code is already recorded), but
        # the reply carries the other side's close.
        self.wasClean = True
        self.sendCloseFrame(*answer, isReply=True)
        if self.factory.isServer:
            self.dropConnection(abort=False)

    def received_close(self):
        """The (code, reason as UTF-8) of the close this leg's peer sent."""
        reason = self.remoteCloseReason
        return self.remoteCloseCode, None if reason is None else reason.encode("utf-8")

    def _fail_connection(self, code=closecodes.GOING_AWAY, reason="going away"):
        if self.relay is not None and self.state in (_OPEN, _CLOSING):
            # A close Autobahn refuses (a code no one may send: 1002; a reason not UTF-8: 1007,
            # on this leg) is, to the other side, a peer's protocol error, not a message of its
            # own gone bad.
            in_close = self.current_frame is not None and self.current_frame.opcode == _CLOSE_FRAME
            self.relay.failed(self, closecodes.PROTOCOL_ERROR if in_close else code, reason)
        WebSocketProtocol._fail_connection(self, code, reason)

    _flush_deadline = None

    def _closeConnection(self, abort=False):
        """Autobahn API: a graceful close gets closeHandshakeTimeout to flush what is queued,
        then is aborted: a peer that never reads must not hold its connection forever."""
        if not abort and self._flush_deadline is None:
            self._flush_deadline = txaio.call_later(self.closeHandshakeTimeout, self._flush_timed_out)
        super()._closeConnection(abort)

    def _flush_timed_out(self):
        self._flush_deadline = None
        self.transport.abortConnection()

    def connectionLost(self, reason):
        """Twisted API: keep the cause, which Autobahn reduces to a string; stop the timers that
        would otherwise keep this leg (and its relay) in memory for up to close_timeout."""
        self.lost_reason = reason.value
        self._stop_keepalive()
        if self._flush_deadline is not None:
            self._flush_deadline.cancel()
            self._flush_deadline = None
        if self.closeHandshakeTimeoutCall is not None:  # Autobahn leaves this one running
            self.closeHandshakeTimeoutCall.cancel()
            self.closeHandshakeTimeoutCall = None
        super().connectionLost(reason)
        self._let_go()

    def _let_go(self):
        # A pair's objects refer to each other (legs, relay, directions, report, attempt). Once
        # a leg is gone it drops its references into the pair, so that a finished pair is freed
        # at once by reference counting, not later by the cyclic garbage collector, whose
        # passes cost about 4% of a connection's CPU (docs/performance.md). Autobahn resolved
        # is_closed with this leg: from here on it holds None.
        self.is_closed.addCallback(_nothing)
        self.relay = None
        self.outbound = NOWHERE

    fast_frames = None  # fastframes.route(self, sink) while the pair relays without compression

    def start_fast_frames(self, sink):
        """Relay whole small messages to `sink` on the fast path from now on (Relay.join)."""
        self.fast_frames = fastframes.route(self, sink)

    def stop_fast_frames(self):
        """Leave everything to Autobahn's parser from now on (the pair is closing)."""
        self.fast_frames = None

    def dataReceived(self, data):
        """Twisted API: simple whole-message frames first (fastframes), the rest straight to
        Autobahn's parser (Autobahn's own dataReceived only adds a debug line, whose arguments
        cost on every chunk)."""
        if self.fast_frames and not self.data and self.current_frame is None and not self.inside_message:
            used = fastframes.forward(self, data)
            if used:
                if used == len(data):
                    return
                data = data[used:]
        elif self.state == _CLOSED or self._deferred_close is not None:
            # Nothing reads it any more, but Autobahn would keep it (a TLS connection is read
            # on until the peer's close_notify, and a peer could send without end meanwhile),
            # or parse it after the peer's close, which nothing may follow.
            return
        self._dataReceived(data)

    def sendData(self, data, sync=False, chopsize=None):
        """Autobahn API: written through to the socket when nothing is queued (see writes).

        Autobahn's own version would also count the bytes in trafficStats, which the relay
        never reads (its own counters are in relay.Direction).
        """
        if sync or chopsize or self.send_queue:
            return WebSocketProtocol.sendData(self, data, sync, chopsize)
        write_through(self.transport, data)

    # Opening: Autobahn's own steps, without the details of the transport it gathers for WAMP.
    # tests/test_autobahn_costs.py fails if the names Autobahn's versions use change.

    def connectionMade(self):
        """Twisted API: Autobahn's connectionMade, with transport details that name the peer only.

        Autobahn's version also reads the process and thread ids (two system calls per leg) and,
        on TLS, parses the peer's certificate into a dictionary of names and fingerprints for
        WAMP's authentication. The relay never reads them, and a resumed TLS session knows the
        certificate before the handshake (upstream.ResumingTLS): it would be parsed for every
        connection to Binance, at a cost above the rest of the leg's opening.
        """
        self.peer = peer2str(self.transport)
        self._transport_details = TransportDetails(
            channel_framing=TransportDetails.CHANNEL_FRAMING_WEBSOCKET, peer=self.peer,
            is_server=self.is_server,
        )
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except Exception:  # as in Autobahn's: a Unix socket has no Nagle to turn off
            pass
        self._connectionMade()

    def _onOpen(self):
        """Autobahn internal: onOpen, without Autobahn's tls-unique channel binding and peer
        certificate details first (see connectionMade)."""
        self.onOpen()

    def forget_handshake(self):
        """Drop what only the opening handshake needed, and compact what is left: a relay
        holds thousands of idle legs, and a Python dict never shrinks on its own."""
        state = self.__dict__
        for name in _HANDSHAKE_ONLY:
            state.pop(name, None)
        self._transport_details = None  # Autobahn reads it only up to onOpen (WAMP uses it)
        self.__dict__ = dict(state)


# Set during the opening handshake and read by Autobahn only until it completes.
_HANDSHAKE_ONLY = (
    "http_request_data", "http_response_data", "http_headers", "http_status_line",
    "http_request_params", "http_request_uri", "http_request_path", "http_request_host",
    "websocket_extensions", "websocket_origin", "websocket_protocols", "websocket_key", "_wskey",
    "_tcp_peer",  # the browser leg's (server.BrowserLeg)
)


class UpstreamLeg(LegMixin, WebSocketClientProtocol):
    """The relay's connection to the upstream (Binance) for one browser."""

    lost_reason = None

    def connectionMade(self):
        """Twisted API: the relay counts this leg as live until it is gone (see
        RelayServerFactory.when_idle)."""
        super().connectionMade()
        if self.factory.registry is not None:
            self.factory.registry.upstream_live.add(self)

    def connectionLost(self, reason):
        """Twisted API."""
        super().connectionLost(reason)
        if self.factory.registry is not None:
            self.factory.registry.forget(self)
        self.factory.attempt = None  # which refers to this leg (see LegMixin._let_go)

    def onOpen(self):
        """IWebSocketChannel API."""
        self.forget_handshake()
        self.factory.attempt.opened(self)

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):
        """Autobahn API: once this leg has answered the upstream's close, the upstream gets
        serverConnectionDropTimeout to drop TCP, as after a close the relay started.

        Autobahn starts no timer after a client's answer ("we expect the server to drop the
        TCP"): an upstream that never did would keep this leg, and its pair, for good.
        """
        super().sendCloseFrame(code, reasonUtf8, isReply)
        if (isReply and self.state == _CLOSING and self.serverConnectionDropTimeout
                and self.serverConnectionDropTimeoutCall is None):
            self.serverConnectionDropTimeoutCall = txaio.call_later(
                self.serverConnectionDropTimeout, self.onServerConnectionDropTimeout
            )

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
            autoPingInterval=0,  # the relay's own keepalive instead (KeepaliveWheel)
            utf8validateIncoming=True,
        )
        self.browser_options = dict(self.options, **browser_compression(compression))
        self.upstream_options = dict(self.options, **upstream_compression(compression))
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout


class UpstreamFactory(WebSocketClientFactory):
    """Builds the one upstream leg for one browser connection.

    Use `for_settings`: its class holds the configuration, set up once, so that each
    connection's factory holds only its own target and subprotocols.
    """

    protocol = UpstreamLeg
    noisy = False  # no "Starting factory" / "Stopping factory" log lines for every connection

    @classmethod
    def for_settings(cls, settings):
        """A subclass configured for `settings`, whose instances are ready to connect."""
        # WebSocketClientFactory.__init__ reseeds the RNG from os.urandom, makes a batched
        # timer and sets ~40 options: once here, not for every connection.
        template = cls.__new__(cls)
        WebSocketClientFactory.__init__(template, useragent="chatrelay")
        # The relay's own deadline bounds the upstream handshake (UpstreamAttempt).
        template.setProtocolOptions(openHandshakeTimeout=0, **settings.upstream_options)
        return type(cls.__name__, (cls,), vars(template))

    def __init__(self, target, protocols, registry=None):
        self.setSessionParameters(target.url, None, protocols or None, "chatrelay")
        self.resource = target.resource  # what the allowlist checked, not Autobahn's own parse
        self.registry = registry  # the RelayServerFactory that counts the leg while it lives
        self.attempt = None

    def setProtocolOptions(self, **options):
        """Autobahn API: the options also go to the protocol class (see autobahn_costs)."""
        super().setProtocolOptions(**options)
        self.protocol = autobahn_costs.options_on_class(type(self).protocol, self)
