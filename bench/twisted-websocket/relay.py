"""A WebSocket relay on plain Twisted protocols, without Autobahn: a benchmark reference point, not a
relay to deploy.

    python bench/twisted-websocket/relay.py --port PORT [--allow-prefix ws://127.0.0.1:]
        [--ping-interval 30] [--max-message-size 1048576] [--connect-timeout 10]

It does per connection what the Node relay (bench/node-relay/relay.js) does, in about the least
Python that RFC 6455 allows: it checks the browser's opening handshake (GET, HTTP/1.1, Host,
Upgrade, Connection, a 16-byte Sec-WebSocket-Key, version 13, subprotocols that are tokens), the
key (in constant time) and the target's prefix; a bad key, target or prefix gets the 101 and
then 4401, 4400 or 4403. It opens its own WebSocket to the target (a fresh key, the browser's
subprotocols; the answer's status, Upgrade, Connection, Sec-WebSocket-Accept and subprotocol
checked), and sends the browser its 101 once that is open, or 1014 if it fails, all within one
timer; the browser is not read meanwhile. Then it relays frame by frame: each frame's header
checked (RSV bits, opcode, masking as the side requires, control frames whole and short,
continuation order, the message size limit), text checked for UTF-8 across fragments, a
browser's payload unmasked and masked anew (keys sliced from 4 KiB of os.urandom, as `ws` and
chatrelay take them); pings and pongs pass through, but for the pong of its own keepalive ping.
A close is answered at once, its code and reason passed on (1001 for a browser gone, 1014 for an
upstream gone; 1002, 1007 or 1009 for a protocol error, which the other leg gets too), and every
close the relay sends, an answer included, gets a timer, as in `ws`. Nagle is off on both legs;
one timer pings every open leg each --ping-interval; one log line is written per connection. It
has no limits per client, metrics or flow control, and reaches only ws:// targets given by IP
address (no name lookup, no TLS). It passes bench/load/check.js.

It measures what a relay doing the WebSocket work costs in Twisted without Autobahn's protocol
classes; bench/twisted-floor/relay.py measures the hop without any WebSocket work. bench/ab.py
runs it as `--src twisted-websocket`, on chatrelay's reactor and `write_through` when chatrelay
is importable (as twisted-floor does).
"""

import argparse
import base64
import codecs
import hashlib
import hmac
import os
import re
import struct
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reference_reactor import install, write_through  # noqa: E402

install()

from twisted.internet import protocol, reactor, task  # noqa: E402
from twisted.internet.abstract import isIPAddress, isIPv6Address  # noqa: E402

MAX_HEAD = 8192
TOKEN = os.environ["BINANCE_PROXY_TOKEN"].encode()
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OWN_PING = b"twisted-websocket-keepalive"
CLOSE_TIMEOUT = 30.0  # seconds a peer has to answer the relay's close (as `ws`)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token, a subprotocol's syntax
_from_bytes = int.from_bytes
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

# Close codes a peer may send (RFC 6455 7.4; 1004-1006 and 1015 are reserved).
_SENDABLE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


class ProtocolError(Exception):
    """A peer broke RFC 6455: its leg closes with `code`."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_for(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (bytes as sent)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def masked(payload, key):
    """`payload` XOR the 4-byte `key` repeated (masking and unmasking alike)."""
    n = len(payload)
    if not n:
        return payload
    return (_from_bytes(payload, "little") ^ _from_bytes((key * (n // 4 + 1))[:n], "little")).to_bytes(n, "little")


class MaskingKeys:
    """4-byte masking keys sliced from os.urandom read 4 KiB at a time (as `ws` and chatrelay do)."""

    def __init__(self):
        self._pool, self._at = b"", 0

    def key(self):
        """The next key."""
        if self._at == len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        self._at += 4
        return self._pool[self._at - 4:self._at]


_new_key = MaskingKeys().key


def frame(b0, payload, mask):
    """One frame: first byte `b0` (FIN, opcode), `payload`, masked with a fresh key if `mask`."""
    n = len(payload)
    if n < 126:
        head = bytes((b0, n | (0x80 if mask else 0)))
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126 | (0x80 if mask else 0), n)
    else:
        head = struct.pack("!BBQ", b0, 127 | (0x80 if mask else 0), n)
    if not mask:
        return head + payload
    key = _new_key()
    return head + key + masked(payload, key)


def close_payload(code, reason=b""):
    """A close frame's payload: no code stays no code."""
    return b"" if code is None else struct.pack("!H", code) + reason


def parse_close(payload):
    """(code, reason) of a close frame's payload, or ProtocolError."""
    if not payload:
        return None, b""
    if len(payload) == 1:
        raise ProtocolError(1002, "close payload of one byte")
    code = struct.unpack("!H", payload[:2])[0]
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise ProtocolError(1002, "close code not allowed")
    reason = payload[2:]
    try:
        reason.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "close reason not UTF-8") from None
    return code, reason


def parse_head(head):
    """(first line, {lower-case name: value}) of an HTTP head without its blank line; repeated
    headers are joined with commas; ValueError if a line is not a header."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError("not a header line")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return lines[0], headers


def key_ok(key):
    """Whether a Sec-WebSocket-Key is the base64 of 16 bytes."""
    try:
        return len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def has_token(value, token):
    """Whether a comma-separated header value lists `token` (case-insensitively)."""
    return token in (part.strip().lower() for part in (value or "").split(","))


def allowed(target, prefixes):
    """The target's URL, normalised with its port, starts with an allowed prefix (as the Node
    relay checks it)."""
    port = (443 if target.scheme == "wss" else 80) if target.port is None else target.port
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    path = target.path or "/"
    normal = f"{target.scheme}://{host}:{port}{path}{'?' + target.query if target.query else ''}"
    return any(normal.startswith(prefix) for prefix in prefixes)


class Leg(protocol.Protocol):
    """One side of a relayed pair: checks the frames that come in and sends them on to `other`."""

    mask_in = False  # whether this side's peer masks its frames (a browser does)
    other = None  # the other leg, once the pair is joined
    opened = False  # this leg's WebSocket is open
    reading = False  # frames from the peer are read (from the open to its close or an error)
    gone = False  # the TCP connection is lost
    close_sent = False
    close_code = "-"
    messages = 0
    alive = True  # answered the last keepalive ping
    _close_timer = None
    _message = 0  # the opcode of the message in progress (1 text, 2 binary), or 0
    _message_size = 0
    _decoder = None  # UTF-8 of a text message in progress
    _pending = None  # the chunks of an incomplete frame
    _pending_size = 0
    _needed = 0

    def __init__(self, pair):
        self.pair = pair
        self.head = b""  # the HTTP head read so far; None once read

    def read_head(self, data):
        """(the HTTP head without its blank line, what follows it) once `data` completes the head;
        None before, and for a head over MAX_HEAD (after calling head_too_large)."""
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self.head_too_large()
            return None
        head, rest, self.head = self.head[:end], self.head[end + 4:], None
        return head, rest

    # Frames in.

    def frames_received(self, data):
        """Relay the complete frames in `data` (after what is pending), keep the rest."""
        if self._pending is not None:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._needed:
                return
            data = b"".join(self._pending)
            self._pending = None
        try:
            used, needed = self._frames(data)
        except ProtocolError as error:
            self.fail(error.code, error.reason)
            return
        if used < len(data) and self.reading:
            rest = data[used:]
            self._pending, self._pending_size, self._needed = [rest], len(rest), needed

    def _frames(self, data):
        # Returns (bytes used, bytes the first frame not used needs from its start).
        pos, end = 0, len(data)
        limit = self.pair.max_message_size
        while self.reading and end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if end - start < 2:
                    return pos, 4
                length = _from_bytes(data[start:start + 2], "big")
                start += 2
            elif length == 127:
                if end - start < 8:
                    return pos, 10
                length = _from_bytes(data[start:start + 8], "big")
                start += 8
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if b0 & 0x70:
                raise ProtocolError(1002, "RSV bit set")
            if bool(b1 & 0x80) != self.mask_in:
                raise ProtocolError(1002, "frame masked wrongly")
            if opcode >= 8:
                if not fin or length > 125 or opcode > 10:
                    raise ProtocolError(1002, "bad control frame")
            elif opcode > 2 or (opcode == 0) != bool(self._message):
                raise ProtocolError(1002, "bad data frame")
            elif (0 if opcode else self._message_size) + length > limit:
                raise ProtocolError(1009, "message too big")
            payload_at = start + 4 if self.mask_in else start
            if end - payload_at < length:
                return pos, payload_at - pos + length
            payload = data[payload_at:payload_at + length]
            if self.mask_in:
                payload = masked(payload, data[start:start + 4])
            pos = payload_at + length
            if opcode >= 8:
                self.control_received(opcode, payload)
            else:
                self.data_received(b0, opcode, fin, payload)
        return pos, 2

    def data_received(self, b0, opcode, fin, payload):
        if opcode:
            self._message, self._message_size = opcode, 0
            self._decoder = _Utf8Decoder() if opcode == 1 else None
        self._message_size += len(payload)
        if self._decoder is not None:
            try:
                self._decoder.decode(payload, final=bool(fin))
            except UnicodeDecodeError:
                raise ProtocolError(1007, "text not UTF-8") from None
        if fin:
            self._message = 0
            self.messages += 1
        other = self.other
        if other is not None and other.sending():
            write_through(other.transport, frame(b0, payload, not other.mask_in))

    def control_received(self, opcode, payload):
        other = self.other
        if opcode == 8:
            self.close_frame_received(payload)
        elif opcode == 10 and payload == OWN_PING:
            self.alive = True
        elif other is not None and other.sending():
            write_through(other.transport, frame(0x80 | opcode, payload, not other.mask_in))

    def sending(self):
        """Whether frames may be sent on this leg."""
        return self.opened and not self.close_sent and not self.gone

    # Closing.

    def close_frame_received(self, payload):
        code, reason = parse_close(payload)
        self.reading = False  # nothing after a close is read
        self.close_code = 1005 if code is None else code
        if self.close_sent:  # the answer to the relay's close
            self.transport.loseConnection()
            return
        self.send_close(code, reason)  # answered at once, as `ws` does
        self.transport.loseConnection()
        self.pair.closed_by(self, code, reason)

    def send_close(self, code, reason=b""):
        """Start (or answer) the closing handshake on this leg."""
        if not self.sending():
            return
        self.close_sent = True
        write_through(self.transport, frame(0x88, close_payload(code, reason), not self.mask_in))
        self._close_timer = reactor.callLater(CLOSE_TIMEOUT, self.transport.abortConnection)

    def fail(self, code, reason):
        """A protocol error from this leg's peer: close it with `code`, and the other leg too."""
        self.reading = False
        self.close_code = code
        self.send_close(code, reason.encode())
        self.transport.loseConnection()
        self.pair.closed_by(self, code, reason.encode(), failed=True)

    def connectionLost(self, reason):
        self.gone = True
        self.reading = False
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self._close_timer = None
        self.pair.lost(self)


class Browser(Leg):
    """The browser's connection: reads its request head, then relays once it has its 101."""

    mask_in = True

    def __init__(self, pair):
        super().__init__(pair)
        self.early = b""  # what came after the head, before the 101

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        if self.reading:
            self.frames_received(data)
        elif self.head is None:
            self.early += data
        else:
            read = self.read_head(data)
            if read is not None:
                head, self.early = read
                self.transport.pauseProducing()  # until the 101: what comes meanwhile waits in the kernel
                self.pair.request(head)

    def head_too_large(self):
        """The request head grew past MAX_HEAD."""
        self.refuse_http(b"431 Request Header Fields Too Large")

    def refuse_http(self, status, extra=b""):
        """An HTTP refusal, for a request that is not a WebSocket handshake."""
        self.head = None
        self.transport.write(b"HTTP/1.1 " + status + b"\r\n" + extra + b"Content-Length: 0\r\n\r\n")
        self.transport.loseConnection()

    def open(self, key, protocol):
        """Send the 101 and relay what the browser sent meanwhile."""
        self.opened = self.reading = True
        self.transport.resumeProducing()
        extra = b"Sec-WebSocket-Protocol: " + protocol + b"\r\n" if protocol else b""
        write_through(self.transport, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key) + b"\r\n"
                      + extra + b"\r\n")
        if self.early:
            early, self.early = self.early, b""
            self.frames_received(early)


class Upstream(Leg):
    """The relay's connection to the target: sends its handshake, checks the answer, then relays."""

    def __init__(self, pair, request, key, protocols):
        super().__init__(pair)
        self.request = request
        self.accept = accept_for(key)
        self.protocols = protocols

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.pair.upstream_connected(self)
        write_through(self.transport, self.request)

    def head_too_large(self):
        """The answer's head grew past MAX_HEAD."""
        self.transport.abortConnection()

    def dataReceived(self, data):
        if self.reading:
            self.frames_received(data)
            return
        read = None if self.head is None else self.read_head(data)
        if read is None:
            return
        head, rest = read
        protocol = self.check_answer(head)
        if protocol is None:
            self.transport.abortConnection()
            return
        self.opened = self.reading = True
        self.pair.upstream_opened(protocol)
        if rest:
            self.frames_received(rest)

    def check_answer(self, head):
        """The subprotocol chosen (b"" for none), or None for an answer that does not open."""
        try:
            status, headers = parse_head(head)
        except ValueError:
            return None
        if status.split(" ", 2)[:2] != ["HTTP/1.1", "101"]:
            self.pair.upstream_status = status[9:12]
            return None
        chosen = headers.get("sec-websocket-protocol", "")
        if (
            not has_token(headers.get("upgrade"), "websocket")
            or not has_token(headers.get("connection"), "upgrade")
            or headers.get("sec-websocket-accept", "").encode() != self.accept
            or "sec-websocket-extensions" in headers  # none was offered
            or ((chosen or self.protocols) and chosen not in self.protocols)
        ):
            return None
        return chosen.encode()


class UpstreamFactory(protocol.ClientFactory):
    """One connection attempt for one pair."""

    noisy = False

    def __init__(self, pair, request, key, protocols):
        self.pair = pair
        self.args = (request, key, protocols)

    def buildProtocol(self, addr):
        return Upstream(self.pair, *self.args)

    def clientConnectionFailed(self, connector, reason):
        self.pair.upstream_failed("upstream refused the connection", stop=False)


class Pair:
    """A browser and its upstream: the handshakes between them, the closes, the log line."""

    upstream = None
    upstream_status = None  # the HTTP status of an upstream that refused the handshake
    connector = None
    origin = "-"
    outcome = "closed"
    closing = False
    _timer = None  # the upstream attempt's deadline, while it runs
    _browser_key = None

    def __init__(self, relay, peer):
        self.relay = relay
        self.max_message_size = relay.max_message_size
        self.peer = peer
        self.started = time.time()
        self.browser = Browser(self)

    def request(self, head):
        """The browser's request head arrived: check it, then open the upstream or refuse."""
        browser = self.browser
        try:
            request_line, headers = parse_head(head)
            method, uri, version = request_line.split(" ")
        except ValueError:
            return browser.refuse_http(b"400 Bad Request")
        key = headers.get("sec-websocket-key", "").encode()
        if (
            method != "GET"
            or version != "HTTP/1.1"
            or "host" not in headers
            or not has_token(headers.get("upgrade"), "websocket")
            or not has_token(headers.get("connection"), "upgrade")
            or not key_ok(key)
        ):
            return browser.refuse_http(b"400 Bad Request")
        if headers.get("sec-websocket-version") != "13":
            return browser.refuse_http(b"426 Upgrade Required", b"Sec-WebSocket-Version: 13\r\n")
        self._browser_key = key
        protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if not all(_TOKEN.fullmatch(p) for p in protocols):
            return browser.refuse_http(b"400 Bad Request")
        query = urllib.parse.parse_qs(uri.partition("?")[2])
        keys, targets = query.get("key", []), query.get("target", [])
        if len(keys) != 1 or not hmac.compare_digest(keys[0].encode(), TOKEN):
            return self.refuse(4401, b"invalid relay key", "bad_key", protocols)
        try:
            if len(targets) != 1:
                raise ValueError("exactly one target is required")
            target = urllib.parse.urlsplit(targets[0])
            host, port = target.hostname, 80 if target.port is None else target.port
            if target.scheme != "ws" or not host or not (isIPAddress(host) or isIPv6Address(host)):
                raise ValueError("not a ws:// URL with an IP address")
        except ValueError as error:
            reason = f"bad target: {error}".encode()[:123].decode("utf-8", "ignore").encode()
            return self.refuse(4400, reason, "bad_target", protocols)
        if not allowed(target, self.relay.allow_prefixes):
            return self.refuse(4403, b"target not allowed", "forbidden_target", protocols)
        self.origin = f"ws://{target.netloc}"
        self.open_upstream(target, host, port, protocols)

    def open_upstream(self, target, host, port, protocols):
        """Connect to the target and send its handshake, within one deadline."""
        key = base64.b64encode(os.urandom(16))
        path = (target.path or "/") + ("?" + target.query if target.query else "")
        offer = f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n" if protocols else ""
        request = (f"GET {path} HTTP/1.1\r\nHost: {target.netloc}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nUser-Agent: twisted-websocket\r\n"
                   f"{offer}").encode() + b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        self._timer = reactor.callLater(self.relay.connect_timeout, self.upstream_failed,
                                        "upstream connect timed out")
        factory = UpstreamFactory(self, request, key, protocols)
        self.connector = reactor.connectTCP(host, port, factory, timeout=None)

    def upstream_connected(self, upstream):
        self.upstream = upstream

    def upstream_opened(self, protocol):
        self._stop_timer()
        browser, upstream = self.browser, self.upstream
        browser.other, upstream.other = upstream, browser
        browser.open(self._browser_key, protocol)
        self.relay.legs.update((browser, upstream))

    def upstream_failed(self, reason, stop=True):
        """The upstream could not be opened (`stop`: a connection attempt may still be running)."""
        if not self._stop_timer():
            return
        if self.upstream is not None:
            self.upstream.transport.abortConnection()
        elif stop:
            self.connector.stopConnecting()
        if self.upstream_status:
            reason = f"upstream refused the WebSocket handshake (HTTP {self.upstream_status})"
        self.refuse(1014, reason.encode(), "upstream_failed", [])

    def _stop_timer(self):
        # Whether the attempt was still running.
        if self._timer is None:
            return False
        if self._timer.active():
            self._timer.cancel()
        self._timer = None
        return True

    def refuse(self, code, reason, outcome, protocols):
        """Accept the browser (so its JavaScript can read the code), then close with `code`."""
        self.outcome = outcome
        browser = self.browser
        if browser.gone:
            return
        browser.open(self._browser_key, protocols[0].encode() if protocols else b"")
        browser.send_close(code, reason)

    def closed_by(self, leg, code, reason, failed=False):
        """`leg`'s peer closed (or broke the protocol): the other leg gets the code."""
        if self.closing or leg.other is None:
            return
        self.closing = True
        side = "browser_" if leg is self.browser else "upstream_"
        self.outcome = side + ("failed" if failed else "closed")
        if failed and code not in (1007, 1009):
            code = 1001 if leg is self.browser else 1014
        leg.other.send_close(code, reason)

    def lost(self, leg):
        """A leg's TCP connection is gone."""
        self.relay.legs.discard(leg)
        if leg is self.upstream and self._timer is not None:
            self.upstream_failed("upstream closed during the handshake")
        elif leg is self.browser and self._timer is not None:  # gone while the upstream opens
            self._stop_timer()
            if self.upstream is not None:
                self.upstream.transport.abortConnection()
            else:
                self.connector.stopConnecting()
        elif leg.other is not None and not self.closing:
            self.closing = True
            if leg is self.browser:
                self.outcome = "browser_lost"
                leg.other.send_close(1001, b"browser went away")
            else:
                self.outcome = "upstream_lost"
                leg.other.send_close(1014, b"upstream connection lost")
        if self.browser.gone and (self.upstream is None or self.upstream.gone):
            self.log()

    def log(self):
        """The connection's one log line, written at once (as the Node relay's)."""
        upstream = self.upstream
        os.write(1, (f"{self.peer} {self.outcome} after {time.time() - self.started:.3f}s; "
                     f"target {self.origin}; close browser {self.browser.close_code} upstream "
                     f"{upstream.close_code if upstream else '-'}; browser->upstream "
                     f"{self.browser.messages} msgs; upstream->browser "
                     f"{upstream.messages if upstream else 0} msgs\n").encode())


class RelayFactory(protocol.ServerFactory):
    """Makes a Pair for each accepted browser; pings every open leg each ping interval."""

    noisy = False

    def __init__(self, allow_prefixes, max_message_size, connect_timeout, ping_interval):
        self.allow_prefixes = allow_prefixes
        self.max_message_size = max_message_size
        self.connect_timeout = connect_timeout
        self.legs = set()  # every open leg, for the keepalive
        if ping_interval > 0:
            task.LoopingCall(self.ping_all).start(ping_interval, now=False)

    def buildProtocol(self, addr):
        return Pair(self, f"{addr.host}:{addr.port}").browser

    def ping_all(self):
        """Ping every open leg; drop one that did not answer the last ping."""
        for leg in list(self.legs):
            if not leg.alive:
                leg.transport.abortConnection()
            elif leg.sending():
                leg.alive = False
                write_through(leg.transport, frame(0x89, OWN_PING, not leg.mask_in))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--allow-prefix", action="append", default=[])
    parser.add_argument("--ping-interval", type=float, default=30.0)
    parser.add_argument("--max-message-size", type=int, default=1 << 20)
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    args = parser.parse_args()
    factory = RelayFactory(args.allow_prefix or ["ws://127.0.0.1:"], args.max_message_size,
                           args.connect_timeout, args.ping_interval)
    reactor.listenTCP(args.port, factory, backlog=511, interface="127.0.0.1")
    print(f"listening on {args.port} with {type(reactor).__module__}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
