"""The relay's fast path for the usual frames: small complete messages, pings and pongs.

While a joined pair relays without compression (from Relay.join, through the legs'
start_fast_frames, until the pair starts closing), a leg's received bytes are first scanned
here: every complete frame at the start of the chunk that is a whole data message (FIN, no RSV
bits, text or binary, at most 65,535 bytes and within the size limits, with valid UTF-8 if
text), a ping or a pong, masked as the side requires, goes to the other leg directly, and all
of them in one write: from a browser unmasked, checked and masked anew with the relay's own
key; from an upstream checked and passed on byte for byte. The one exception is the pong that
answers the relay's own keepalive ping on that leg: it stops here. The first frame that is
anything else (a close, a fragment, a large or incomplete frame, a protocol error) and all that
follows it go to Autobahn's parser as usual, which also finds and reports every error.
"""

from autobahn.websocket.protocol import WebSocketProtocol

from chatrelay.masking import KEYS
from chatrelay.writes import write_through

_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND
_DATA = (0x81, 0x82)  # FIN + text, FIN + binary
_PING = 0x89  # FIN + ping
_PONG = 0x8A  # FIN + pong
_from_bytes = int.from_bytes
_new_key = KEYS.key


def _repeated(mask, n):
    """The 4-byte `mask` repeated over n bytes, as an int (little-endian, as payloads are read)."""
    return _from_bytes((mask * (n // 4 + 1))[:n], "little")


def route(leg, sink):
    """What the fast path needs to know about relaying from `leg` to `sink`, settled at join:
    whether frames come in masked (from a browser) and go out masked (to an upstream), the
    largest payload it takes, and whether text is checked for UTF-8."""
    masked = leg.factory.isServer  # a browser masks its frames; an upstream must not
    assert masked != sink.factory.isServer
    limit = min(leg.maxMessagePayloadSize or 65535, leg.maxFramePayloadSize or 65535, 65535)
    return masked, limit, leg.utf8validateIncoming


def control_frame(opcode, payload, masked):
    """A complete control frame (close 8, ping 9 or pong 10; payload at most 125 bytes), masked
    with a fresh key if `masked`."""
    length = len(payload)
    b0 = 0x80 | opcode
    if not masked:
        return bytes((b0, length)) + payload
    key = _new_key()
    masked_payload = (_from_bytes(payload, "little") ^ _repeated(key, length)).to_bytes(length, "little")
    return bytes((b0, 0x80 | length)) + key + masked_payload


def forward(leg, data):
    """Relay the simple frames at the start of `data` from `leg` to the other leg; return the
    number of bytes consumed (0: hand everything to Autobahn)."""
    direction = leg.outbound
    sink = direction.sink
    if (
        sink is None
        or leg.state != _OPEN
        or sink.state != _OPEN
        or sink.send_state != _GROUND
        or sink.send_queue
    ):
        return 0
    masked, limit, validate = leg.fast_frames
    n = len(data)
    i = 0
    out = []
    kept = 0  # from an upstream: where the frames not yet in `out` begin, to go on byte for byte
    saw_data = False
    while n - i >= 2:
        b0 = data[i]
        b1 = data[i + 1]
        if bool(b1 & 0x80) != masked:
            break
        length = b1 & 0x7F
        p = i + 2
        is_data = b0 in _DATA
        if is_data:
            if length == 126:
                if n - p < 2:
                    break
                length = (data[p] << 8) | data[p + 1]
                p += 2
                if length < 126:  # not the shortest encoding: Autobahn decides
                    break
            elif length == 127:
                break
            if length > limit:
                break
        elif b0 != _PING and b0 != _PONG or length > 125:
            break
        if masked:
            if n - p < 4:
                break
            mask = data[p:p + 4]
            p += 4
        end = p + length
        if end > n:
            break
        if masked:
            plain = _from_bytes(data[p:end], "little") ^ _repeated(mask, length)
        if is_data:
            if b0 == 0x81 and validate:
                text = plain.to_bytes(length, "little") if masked else data[p:end]
                if not text.isascii():
                    try:
                        text.decode("utf-8")
                    except UnicodeDecodeError:
                        break
            saw_data = True
            direction.messages += 1
            direction.bytes += length
        elif b0 == _PONG and leg.own_ping is not None and leg.own_ping == (
            plain.to_bytes(length, "little") if masked else data[p:end]
        ):
            leg.own_pong_received()  # the answer to the relay's keepalive: it stops here
            if not masked:
                out.append(data[kept:i])
                kept = end
            i = end
            continue
        if masked:
            # Toward the upstream: the same frame, masked with a fresh key of the relay's own.
            key = _new_key()
            out.append(data[i:i + 2] if length < 126 else data[i:i + 4])
            out.append(key)
            out.append((plain ^ _repeated(key, length)).to_bytes(length, "little"))
        i = end
    if i:
        if direction.open:
            if masked:
                chunk = b"".join(out)
            elif kept:
                out.append(data[kept:i])
                chunk = b"".join(out)
            else:  # toward a browser, upstream frames go on byte for byte (unmasked both ways)
                chunk = data[:i] if i < n else data
            if chunk:
                write_through(sink.transport, chunk)
        if saw_data and leg.awaiting_pong:
            leg.keepalive_answered()  # a message stands in for the relay's keepalive pong
    return i
