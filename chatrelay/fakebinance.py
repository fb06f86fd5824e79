"""A faithful, scriptable, in-process fake of Binance's C2C chat WebSocket.

Follows "Spec for a faithful fake server" in /work/shared/notes/binance-chat.md.
Choices where the real behaviour is unknown (spec items marked A): a bad
listenKey or token is refused with HTTP 401 before the upgrade; a missing
``clientType`` is accepted; rejected frames get an ``ILLEGAL_PARAM`` error frame
and the socket stays open; unknown types are ignored; "Bye" is a close reason
with code 1000.

Run standalone with ``python -m chatrelay.fakebinance [--listen ENDPOINT]``.
"""

import argparse
import http
import itertools
import json
import secrets
import sys
import time
import uuid

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, endpoints, error
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

# Autobahn rejects a received close code 1014 ("bad gateway") unless it is in
# this list; the check reads the base-class list, so patch it (once) here.
if 1014 not in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED:
    WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED.append(1014)

log = Logger(namespace="chatrelay.fakebinance")

DUPLICATE_POLICIES = ("allow", "close_older", "close_newer")
CHAT_PREFIX = "/chat/"


def _now_ms():
    """Current time in epoch milliseconds."""
    return int(time.time() * 1000)


def _reason_phrase(status):
    """The standard HTTP reason phrase for a status code."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Refused"


class _Waiters:
    """A queue of items handed out in order to callers of get()."""

    def __init__(self):
        self._queue = defer.DeferredQueue()

    def put(self, item, keep=True):
        """Hand item to the oldest waiter, or queue it if keep is true."""
        if keep or self._queue.waiting:
            self._queue.put(item)

    def get(self):
        """A Deferred firing with the next item (cancellable)."""
        return self._queue.get()


@implementer(IPushProducer)
class _Flood:
    """Push producer sending a fixed number of bytes while the transport is not paused."""

    def __init__(self, conn, total_bytes, message_size, is_binary):
        self.conn = conn
        self.remaining = total_bytes
        self.total = total_bytes
        self.chunk = (b"\x00" if is_binary else b"x") * message_size
        self.is_binary = is_binary
        self.paused = False
        self.sending = False
        self.done = defer.Deferred()

    def start(self):
        """Register on the transport and start sending."""
        self.conn.transport.registerProducer(self, True)
        self._send()

    def _send(self):
        """Send messages until paused, finished or closed."""
        if self.sending or self.done.called:
            return
        self.sending = True
        try:
            while not self.paused and self.remaining > 0 and self.conn.state == self.conn.STATE_OPEN:
                size = min(len(self.chunk), self.remaining)
                self.remaining -= size
                self.conn.flood_sent += size  # before sending: the write may pause us at once
                self.conn.sendMessage(self.chunk if size == len(self.chunk) else self.chunk[:size], self.is_binary)
        finally:
            self.sending = False
        if self.remaining == 0:
            self._finish(None)
        elif self.conn.state != self.conn.STATE_OPEN:
            self._finish(error.ConnectionLost("connection closed during flood"))

    def _finish(self, failure):
        """Unregister and fire done with the total sent, or fail it."""
        if self.done.called:
            return
        if self.conn.transport is not None:
            self.conn.transport.unregisterProducer()
        self.conn._flood = None
        if failure is None:
            self.done.callback(self.total)
        else:
            self.done.errback(failure)

    def pauseProducing(self):
        """The transport's buffer is full: stop sending."""
        self.paused = True
        if not self.conn.paused_once.called:
            self.conn.paused_once.callback(self.conn.flood_sent)

    def resumeProducing(self):
        """The transport's buffer drained: send more."""
        self.paused = False
        self._send()

    def stopProducing(self):
        """The transport went away: give up."""
        self.paused = True
        self._finish(error.ConnectionLost("transport stopped the flood"))


class ChatConnection(WebSocketServerProtocol):
    """One client's connection to the fake, with hooks for tests."""

    def __init__(self):
        super().__init__()
        self.path = None
        self.params = {}
        self.headers = {}
        self.listen_key = None
        self.received = []
        self.received_bytes = 0
        self.pings_received = []
        self.pongs_received = []
        self.record = True  # False: keep no payloads (binary ones are not even buffered; waiters get b"")
        self.closed = defer.Deferred()
        self.close_info = None
        self.paused_once = defer.Deferred()
        self.flood_sent = 0
        self._messages = _Waiters()
        self._pings = _Waiters()
        self._pongs = _Waiters()
        self._byte_waiters = []
        self._gone_waiters = []
        self._flood = None
        self._handshake_call = None
        self._ping_call = None
        self._ping_seq = itertools.count(1)
        self._message_size = 0

    @property
    def fake(self):
        """The FakeBinance this connection belongs to."""
        return self.factory.fake

    # -- opening handshake ------------------------------------------------------

    def onConnect(self, request):
        """Check path, listenKey and token; refuse, delay or accept the upgrade."""
        fake = self.fake
        fake.handshakes_seen += 1
        self.path = request.path
        self.params = {name: values[0] for name, values in request.params.items() if values}
        self.headers = dict(request.headers)
        if fake._refusals:
            status = fake._refusals.pop(0)
            raise ConnectionDeny(status, _reason_phrase(status))
        key = request.path[len(CHAT_PREFIX):]
        if not request.path.startswith(CHAT_PREFIX) or not key or "/" in key:
            raise ConnectionDeny(404, "Not Found")
        if fake.check_tokens and not fake._use_token(key, self.params.get("token")):
            raise ConnectionDeny(401, "Unauthorized")
        self.listen_key = key
        if fake._delays:
            accepted = defer.Deferred()
            self._handshake_call = fake.reactor.callLater(fake._delays.pop(0), accepted.callback, None)
            accepted.addCallback(self._accept_late)
            return accepted
        return None

    def _accept_late(self, _):
        """Finish a delayed handshake unless the client went away meanwhile."""
        self._handshake_call = None
        if self.state != self.STATE_CONNECTING:
            raise ConnectionDeny(408, "Request Timeout")
        return None

    def onOpen(self):
        """Register the connection, apply the duplicate policy and optional pushes."""
        fake = self.fake
        log.info("open {peer} {path}", peer=self.peer, path=self.path)
        others = [c for c in fake.connections if c.listen_key == self.listen_key and c.state == c.STATE_OPEN]
        fake.connections.append(self)
        if fake.push_statistics_on_open:
            self.push({"type": "statistics", "subType": "unreadChatCount", "orderNo": "", "totalCount": 0})
        if fake.server_ping_interval > 0:
            self._ping_call = fake.reactor.callLater(fake.server_ping_interval, self._server_ping)
        fake._opened.put(self)
        if fake.duplicate_policy == "close_older":
            for other in others:
                other.close(1000, "Bye")
        elif fake.duplicate_policy == "close_newer" and others:
            self.close(1000, "Bye")

    # -- inbound ----------------------------------------------------------------

    def onMessageBegin(self, isBinary):
        """Start counting a message's size."""
        super().onMessageBegin(isBinary)
        self._message_size = 0

    def onMessageFrameData(self, payload):
        """Count payload bytes; skip buffering binary data when not recording."""
        self._message_size += len(payload)
        if self.record or not self.message_is_binary:
            super().onMessageFrameData(payload)

    def onMessage(self, payload, isBinary):
        """Record the message and answer text frames like Binance does."""
        self.received_bytes += self._message_size
        if self.record:
            self.received.append((payload, isBinary))
        self._messages.put((payload, isBinary), keep=self.record)
        self._wake_byte_waiters()
        if not isBinary:
            self._handle_text(payload)

    def _handle_text(self, payload):
        """Store and echo a chat message, or answer ILLEGAL_PARAM."""
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self._reply_error({})
            return
        kind = msg.get("type")
        if kind not in ("text", "image"):
            return  # "ping", "ack", "mark", ...: ignored silently
        order_no = msg.get("orderNo") or msg.get("topicId")
        if not order_no:
            self._reply_error(msg)
        elif kind == "text" and isinstance(msg.get("content"), str):
            self._store_own(msg, order_no, content=msg["content"])
        elif kind == "image" and "content" not in msg and msg.get("imageUrl"):
            fields = ("imageUrl", "thumbnailUrl", "width", "height", "imageType")
            self._store_own(msg, order_no, **{f: msg[f] for f in fields if f in msg})
        else:
            self._reply_error(msg)

    def _store_own(self, msg, order_no, **fields):
        """Store a message sent by this client and echo it back if enabled."""
        stored = {
            "id": self.fake._next_id(),
            "uuid": msg.get("uuid"),
            "type": msg["type"],
            "orderNo": order_no,
            "topicId": msg.get("topicId", order_no),
            **fields,
            "self": True,
            "fromNickname": self.fake.nickname,
            "createTime": _now_ms(),
            "status": "unread",
        }
        self.fake.messages.append(stored)
        if self.fake.echo and self.state == self.STATE_OPEN:
            self.push(stored)

    def _reply_error(self, msg):
        """Send Binance's error frame for a rejected message."""
        frame = {"type": "error", "content": "ILLEGAL_PARAM", "uuid": msg.get("uuid"),
                 "orderNo": msg.get("orderNo") or msg.get("topicId") or ""}
        if "topicId" in msg:
            frame["topicId"] = msg["topicId"]
        if self.state == self.STATE_OPEN:
            self.push(frame)

    def _wake_byte_waiters(self):
        """Fire wait_received_bytes() Deferreds whose total was reached."""
        ready = [w for w in self._byte_waiters if self.received_bytes >= w[0]]
        for waiter in ready:
            self._byte_waiters.remove(waiter)
            waiter[1].callback(self.received_bytes)

    def onPing(self, payload):
        """Record the ping; Autobahn answers it with a pong of the same payload."""
        self.pings_received.append(payload)
        self._pings.put(payload)
        super().onPing(payload)

    def onPong(self, payload):
        """Record the pong."""
        self.pongs_received.append(payload)
        self._pongs.put(payload)

    # -- waiting ----------------------------------------------------------------

    def next_message(self):
        """A Deferred firing with the next (payload, is_binary) received."""
        return self._messages.get()

    def wait_received_bytes(self, total):
        """A Deferred firing with received_bytes once it is at least total."""
        if self.received_bytes >= total:
            return defer.succeed(self.received_bytes)
        d = defer.Deferred(lambda d: self._byte_waiters.remove((total, d)))
        self._byte_waiters.append((total, d))
        return d

    def next_pong(self):
        """A Deferred firing with the next pong payload received."""
        return self._pongs.get()

    def next_ping(self):
        """A Deferred firing with the next ping payload received."""
        return self._pings.get()

    def when_gone(self):
        """A Deferred firing (with close_info) once the connection is gone."""
        if self.close_info is not None:
            return defer.succeed(self.close_info)
        d = defer.Deferred()
        self._gone_waiters.append(d)
        return d

    # -- sending ----------------------------------------------------------------

    def send_text(self, text):
        """Send a text frame."""
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def send_binary(self, data):
        """Send a binary frame."""
        self.sendMessage(data, isBinary=True)

    def push(self, obj):
        """Send obj as one JSON text frame."""
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def push_counterparty_text(self, order_no, content, **extra):
        """Push a text message from the counterparty and return the frame."""
        frame = {
            "id": self.fake._next_id(),
            "uuid": str(uuid.uuid4()),
            "type": "text",
            "orderNo": order_no,
            "topicId": order_no,
            "content": content,
            "self": False,
            "fromNickname": self.fake.counterparty_nickname,
            "createTime": _now_ms(),
            "status": "unread",
            **extra,
        }
        self.fake.messages.append(frame)
        self.push(frame)
        return frame

    def push_system(self, order_no, system_type="buyer_payed", **extra):
        """Push a system message (content is a JSON string) and return the frame."""
        content = {"type": system_type, "orderNo": order_no,
                   "nickName": self.fake.counterparty_nickname, "realName": self.fake.counterparty_real_name}
        frame = {
            "id": self.fake._next_id(),
            "uuid": str(uuid.uuid4()),
            "type": "system",
            "orderNo": order_no,
            "topicId": order_no,
            "content": json.dumps(content, separators=(",", ":")),
            "self": False,
            "createTime": _now_ms(),
            "status": "unread",
            **extra,
        }
        self.fake.messages.append(frame)
        self.push(frame)
        return frame

    def ping(self, payload=b""):
        """Send a ping control frame."""
        self.sendPing(payload)

    def _server_ping(self):
        """Send the periodic server ping and schedule the next one."""
        self._ping_call = None
        if self.state == self.STATE_OPEN:
            self.sendPing(str(next(self._ping_seq)).encode())
            self._ping_call = self.fake.reactor.callLater(self.fake.server_ping_interval, self._server_ping)

    def flood(self, total_bytes, message_size=1 << 20, is_binary=True):
        """Send total_bytes as messages of message_size, pausing whenever the transport is full."""
        if self._flood is not None:
            raise RuntimeError("a flood is already running on this connection")
        if message_size <= 0:
            raise ValueError("message_size must be positive")
        self._flood = _Flood(self, total_bytes, message_size, is_binary)
        done = self._flood.done
        self._flood.start()
        return done

    def pause_reading(self):
        """Stop reading from the socket, like a Binance that stalls."""
        self.transport.pauseProducing()

    def resume_reading(self):
        """Start reading from the socket again."""
        self.transport.resumeProducing()

    # -- closing ----------------------------------------------------------------

    def close(self, code=None, reason=None):
        """Start a closing handshake with any code (None: empty close frame) and reason, verbatim (keep it <= 123 bytes)."""
        if reason is not None and code is None:
            raise ValueError("a close reason needs a close code")
        if self._flood is not None:
            self._flood._finish(error.ConnectionLost("closing during flood"))
        reason_utf8 = reason.encode("utf-8") if isinstance(reason, str) else reason
        self.sendCloseFrame(code=code, reasonUtf8=reason_utf8)

    def drop(self):
        """Abort the TCP connection without a close frame."""
        if self.state != self.STATE_CLOSED:
            self.wasNotCleanReason = "dropped by the fake"
        self.dropConnection(abort=True)

    def onClose(self, wasClean, code, reason):
        """Clean up timers, fail a running flood and fire closed."""
        if self.close_info is not None:
            return
        self.close_info = (wasClean, code, reason)
        log.info("closed {peer} clean={clean} code={code} reason={reason}",
                 peer=self.peer, clean=wasClean, code=code, reason=reason)
        for call in (self._handshake_call, self._ping_call, self.closeHandshakeTimeoutCall):
            if call is not None and getattr(call, "active", lambda: True)():
                call.cancel()
        self._handshake_call = self._ping_call = self.closeHandshakeTimeoutCall = None
        if self._flood is not None:
            self._flood._finish(error.ConnectionLost("connection closed during flood"))
        fake = self.fake
        if self in fake.connections:
            fake.connections.remove(self)
        fake._protocols.discard(self)
        waiters, self._gone_waiters = self._gone_waiters, []
        for d in waiters:
            d.callback(self.close_info)
        self.closed.callback(self.close_info)


class _ChatFactory(WebSocketServerFactory):
    """Server factory that builds ChatConnections and remembers them until they are gone."""

    protocol = ChatConnection
    noisy = False

    def __init__(self, fake, **kwargs):
        super().__init__(**kwargs)
        self.fake = fake

    def buildProtocol(self, addr):
        """Build a ChatConnection and register it with the fake."""
        proto = super().buildProtocol(addr)
        self.fake._protocols.add(proto)
        return proto


class FakeBinance:
    """In-process fake of Binance's C2C chat WebSocket (wss://im.binance.com/chat/<listenKey>?token=..&clientType=web)."""

    def __init__(self, reactor=None, *, echo=True, server_ping_interval=0.0, push_statistics_on_open=False,
                 duplicate_policy="allow", check_tokens=True):
        if reactor is None:
            from twisted.internet import reactor
        if duplicate_policy not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicate_policy must be one of {DUPLICATE_POLICIES}")
        self.reactor = reactor
        self.echo = echo
        self.server_ping_interval = server_ping_interval
        self.push_statistics_on_open = push_statistics_on_open
        self.duplicate_policy = duplicate_policy
        self.check_tokens = check_tokens
        self.listen_key = f"c2c_{secrets.token_hex(16)}_v2"
        self.nickname = f"Merchant-{secrets.token_hex(3)}"
        self.counterparty_nickname = f"User-{secrets.token_hex(3)}"
        self.counterparty_real_name = "J*** D***"
        self.port = None
        self.connections = []
        self.messages = []
        self.handshakes_seen = 0
        self._host = None
        self._listening_port = None
        self._tokens = set()
        self._refusals = []
        self._delays = []
        self._protocols = set()
        self._opened = _Waiters()
        self._ids = itertools.count(_now_ms() * 1_000_000)
        self.factory = self._make_factory()

    def _make_factory(self):
        """Build the Autobahn server factory with the fake's options."""
        factory = _ChatFactory(self, reactor=self.reactor, server=None)
        factory.setProtocolOptions(
            allowNullOrigin=True,
            failByDrop=False,
            webStatus=False,
            echoCloseCodeReason=True,
            maxMessagePayloadSize=0,
            maxFramePayloadSize=0,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=5,
            autoPingInterval=0,
        )
        return factory

    def listen(self, endpoint="tcp:0:interface=127.0.0.1"):
        """Start listening on a Twisted server endpoint (its description, or the endpoint itself);
        fires with the IListeningPort."""
        if isinstance(endpoint, str):
            endpoint = endpoints.serverFromString(self.reactor, endpoint)
        d = endpoint.listen(self.factory)

        def listening(port):
            self._listening_port = port
            address = port.getHost()
            self.port = address.port
            host = address.host
            if host in ("", "0.0.0.0", "::"):
                host = "127.0.0.1"
            self._host = f"[{host}]" if ":" in host else host
            log.info("fake Binance chat listening on {host}:{port}", host=self._host, port=self.port)
            return port

        return d.addCallback(listening)

    def stop(self):
        """Stop listening and abort every open connection; fires when all are gone."""
        port, self._listening_port = self._listening_port, None
        waits = [defer.maybeDeferred(port.stopListening)] if port is not None else []
        for proto in list(self._protocols):
            waits.append(proto.when_gone())
            proto.drop()
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def issue_credential(self):
        """A fresh credential like retrieveChatCredential's data: stable listenKey, new single-use token."""
        if self.port is None:
            raise RuntimeError("call listen() first")
        token = f"TOKEN{secrets.token_hex(16)}"
        self._tokens.add(token)
        return {"chatWssUrl": f"ws://{self._host}:{self.port}/chat", "listenKey": self.listen_key, "listenToken": token}

    def chat_url(self):
        """The chat WebSocket URL for a fresh credential."""
        cred = self.issue_credential()
        return f"{cred['chatWssUrl']}/{cred['listenKey']}?token={cred['listenToken']}&clientType=web"

    def next_connection(self):
        """A Deferred firing with the next ChatConnection to complete its opening handshake."""
        return self._opened.get()

    def refuse_next(self, count=1, status=401):
        """Refuse the next count handshakes with this HTTP status."""
        self._refusals.extend([status] * count)

    def delay_next_handshake(self, seconds):
        """Delay the 101 of the next handshake that passes the checks by seconds."""
        self._delays.append(seconds)

    def _use_token(self, listen_key, token):
        """Consume a valid single-use token for this listenKey; False if invalid."""
        if listen_key != self.listen_key or token not in self._tokens:
            return False
        self._tokens.discard(token)
        return True

    def _next_id(self):
        """A new 19-digit, increasing message id as a string."""
        return str(next(self._ids))


def main(argv=None):
    """Run the fake standalone, printing fresh chat URLs and logging to stdout."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    parser = argparse.ArgumentParser(prog="python -m chatrelay.fakebinance",
                                     description="Fake Binance C2C chat WebSocket server.")
    parser.add_argument("--listen", default="tcp:9000:interface=127.0.0.1",
                        help="Twisted server endpoint (default: %(default)s)")
    parser.add_argument("--check-tokens", action="store_true",
                        help="require the listenKey and a fresh single-use token (default: accept any)")
    parser.add_argument("--urls", type=int, default=1, help="number of chat URLs to print (default: 1)")
    parser.add_argument("--no-echo", action="store_true", help="do not echo accepted messages")
    parser.add_argument("--server-ping-interval", type=float, default=0.0, help="seconds between server pings")
    parser.add_argument("--statistics-on-open", action="store_true", help="push a statistics frame on open")
    parser.add_argument("--duplicate-policy", choices=DUPLICATE_POLICIES, default="allow")
    args = parser.parse_args(argv)

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    fake = FakeBinance(reactor, echo=not args.no_echo, server_ping_interval=args.server_ping_interval,
                       push_statistics_on_open=args.statistics_on_open,
                       duplicate_policy=args.duplicate_policy, check_tokens=args.check_tokens)

    def started(_):
        for _ in range(args.urls):
            print(fake.chat_url(), flush=True)
        reactor.addSystemEventTrigger("before", "shutdown", fake.stop)

    def failed(failure):
        log.failure("cannot listen on {listen}", failure, listen=args.listen)
        reactor.stop()

    reactor.callWhenRunning(lambda: fake.listen(args.listen).addCallbacks(started, failed))
    reactor.run()


if __name__ == "__main__":
    main()
