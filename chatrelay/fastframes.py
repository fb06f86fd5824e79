"""The relay's fast path for the usual chat message: one small complete data frame.

While a joined pair relays without compression (Relay.join sets `fast_frames` on both legs; it
is cleared once the pair starts closing), a leg's received bytes are first scanned here:
every complete data frame at the start of the chunk that is a whole message (FIN, no RSV bits,
text or binary), masked as the side requires, at most 65,535 bytes and within the size limits,
with valid UTF-8 if text, is unmasked, checked and re-framed for the other leg directly, and
all of them go out in one write. The first frame that is anything else (a control frame, a
fragment, a large or incomplete frame, a protocol error) and all that follows it go to
Autobahn's parser as usual, which also finds and reports every error.
"""

import random

from autobahn.websocket.protocol import WebSocketProtocol

from chatrelay.writes import write_through

_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND
_DATA = (0x81, 0x82)  # FIN + text, FIN + binary
_getrandbits = random.getrandbits
_from_bytes = int.from_bytes


def _xor(payload, mask):
    """payload XOR the 4-byte mask repeated (RFC 6455 5.3): one big-int operation."""
    n = len(payload)
    if not n:
        return payload
    key = mask * (n // 4 + 1)
    return (_from_bytes(payload, "little") ^ _from_bytes(key[:n], "little")).to_bytes(n, "little")


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
    masked_in = leg.factory.isServer  # a browser masks its frames; an upstream must not
    mask_out = 0x80 if not sink.factory.isServer else 0
    limit = min(leg.maxMessagePayloadSize or 65535, leg.maxFramePayloadSize or 65535, 65535)
    validate = leg.utf8validateIncoming
    n = len(data)
    i = 0
    out = []
    while n - i >= 2:
        b0 = data[i]
        b1 = data[i + 1]
        if b0 not in _DATA or bool(b1 & 0x80) != masked_in:
            break
        length = b1 & 0x7F
        p = i + 2
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
        if masked_in:
            if n - p < 4:
                break
            mask = data[p:p + 4]
            p += 4
        end = p + length
        if end > n:
            break
        payload = data[p:end]
        if masked_in:
            payload = _xor(payload, mask)
        if b0 == 0x81 and validate:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                break
        direction.messages += 1
        direction.bytes += length
        if direction.open:
            if length < 126:
                header = bytes((b0, mask_out | length))
            else:
                header = bytes((b0, mask_out | 126, length >> 8, length & 0xFF))
            if mask_out:
                # Masks as Autobahn makes its own (random.getrandbits; see its issue 758). They
                # guard against script-chosen bytes fooling intermediaries that read the
                # plaintext; the upstream leg to Binance is TLS, which none can read.
                key = _getrandbits(32).to_bytes(4, "big")
                out.append(header + key + _xor(payload, key))
            else:
                out.append(header + payload)
        i = end
    if i:
        if out:
            write_through(sink.transport, out[0] if len(out) == 1 else b"".join(out))
        if leg.autoPingTimeoutCall is not None and leg.autoPingRestartOnAnyTraffic:
            leg._cancelAutoPingTimeoutCall()
    return i
