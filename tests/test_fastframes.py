"""The fast path for whole-message frames (chatrelay/fastframes.py), in memory.

Each test writes raw frames in one read, so that the fast path sees them together, and checks
what the other side receives and how much the fast path itself took (the rest is Autobahn's).
"""

import os
import struct
import types

import pytest

from chatrelay import fastframes


@pytest.fixture
def taken(monkeypatch):
    """How many bytes each call of the fast path took, in call order."""
    calls = []
    original = fastframes.forward

    def recording(leg, data):
        used = original(leg, data)
        calls.append(used)
        return used

    monkeypatch.setattr(fastframes, "forward", recording)
    return calls


def frame(payload, opcode=0x1, fin=True, mask=None, rsv=0):
    """One raw frame; masked with `mask` (4 bytes) when given."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def non_minimal(payload, mask=None):
    """A text frame whose short length is sent in the 16-bit form: a protocol error."""
    whole = frame(payload, mask=mask)
    return bytes([whole[0], (whole[1] & 0x80) | 126]) + struct.pack("!H", len(payload)) + whole[2:]


def from_browser(payload, opcode=0x1, fin=True):
    """A frame as a browser sends it: masked."""
    return frame(payload, opcode, fin, mask=os.urandom(4))


def joined(harness):
    browser = harness.browser()
    upstream = harness.upstream()
    assert browser.opened and upstream.opened
    return browser, upstream


def test_whole_frames_in_one_read_go_through_in_order(harness, taken):
    """Text stays text, binary stays binary, order is kept, and the fast path took them all."""
    browser, upstream = joined(harness)
    chunk = from_browser(b'{"type":"ping"}') + from_browser(b"\x00\xff" * 200, 0x2) + from_browser(b"")
    browser.sendData(chunk)
    harness.flush()
    # The upstream (an Autobahn server) refuses unmasked frames: the relay masked them.
    assert upstream.messages == [(b'{"type":"ping"}', False), (b"\x00\xff" * 200, True), (b"", False)]
    assert taken == [len(chunk)]
    assert upstream.closed is None


def test_upstream_frames_reach_the_browser_unmasked(harness, taken):
    """Frames from the upstream go on unmasked (a browser fails on masked server frames)."""
    browser, upstream = joined(harness)
    chunk = frame("привет".encode()) + frame(b"x" * 300, 0x2)
    upstream.sendData(chunk)
    harness.flush()
    assert browser.messages == [("привет".encode(), False), (b"x" * 300, True)]
    assert taken == [len(chunk)]
    assert browser.closed is None


def test_frames_to_the_upstream_are_masked_with_the_relays_own_key(harness, taken, monkeypatch):
    """A browser's frame reaches the upstream as the same frame, masked anew by the relay."""
    monkeypatch.setattr(fastframes, "_new_key", lambda: b"\x0a\x0b\x0c\x0d")
    browser, upstream = joined(harness)
    payload = "заказ оплачен".encode()  # text, not ASCII: checked as UTF-8
    chunk = frame(payload, mask=b"\x01\x02\x03\x04")
    before = len(upstream.raw)
    browser.sendData(chunk)
    harness.flush()
    assert upstream.raw[before:] == frame(payload, mask=b"\x0a\x0b\x0c\x0d")
    assert upstream.messages == [(payload, False)]
    assert taken == [len(chunk)]


def test_frames_to_the_browser_go_on_byte_for_byte(harness, taken):
    """An upstream's whole frames reach the browser exactly as they were sent."""
    browser, upstream = joined(harness)
    chunk = frame(b'{"type":"text"}') + frame(b"\x00" * 200, 0x2) + frame(b"")
    before = len(browser.raw)
    upstream.sendData(chunk)
    harness.flush()
    assert browser.raw[before:] == chunk
    assert taken == [len(chunk)]


def test_pings_and_pongs_between_messages_go_fast_in_order(harness, taken, monkeypatch):
    """A ping and a pong between two messages pass through with them, in order, in one write,
    each masked anew with the relay's key; the ping's answer comes back from the other side
    (the relay answers no ping itself)."""
    monkeypatch.setattr(fastframes, "_new_key", lambda: b"\x0a\x0b\x0c\x0d")
    browser, upstream = joined(harness)
    frames = [(b"one", 0x1), (b"are you there", 0x9), (b"late", 0xA), (b"two", 0x1)]
    chunk = b"".join(frame(payload, opcode, mask=b"\x01\x02\x03\x04") for payload, opcode in frames)
    before = len(upstream.raw)
    browser.sendData(chunk)
    harness.flush()
    assert upstream.messages == [(b"one", False), (b"two", False)]
    assert upstream.pings == [b"are you there"]
    assert upstream.pongs == [b"late"]
    assert browser.pongs == [b"are you there"]
    assert taken[0] == len(chunk)
    assert upstream.raw[before:] == b"".join(
        frame(payload, opcode, mask=b"\x0a\x0b\x0c\x0d") for payload, opcode in frames
    )


@pytest.mark.parametrize("opcode", [0x9, 0xA], ids=["ping", "pong"])
def test_upstream_pings_and_pongs_reach_the_browser_byte_for_byte(harness, taken, opcode):
    """An upstream's ping or pong goes on exactly as it came, with the messages around it."""
    browser, upstream = joined(harness)
    chunk = frame(b"one") + frame(b"\x00payload\xff", opcode) + frame(b"two")
    before = len(browser.raw)
    upstream.sendData(chunk)
    harness.flush()
    assert browser.raw[before:before + len(chunk)] == chunk
    assert (browser.pings if opcode == 0x9 else browser.pongs) == [b"\x00payload\xff"]
    assert taken[0] == len(chunk)


@pytest.mark.parametrize(
    "bad",
    [
        frame(b"x" * 126, 0x9, mask=b"abcd"),  # a control frame's payload is at most 125 bytes
        frame(b"ping", 0x9, fin=False, mask=b"abcd"),  # a control frame is never fragmented
        frame(b"ping", 0x9, rsv=0x40, mask=b"abcd"),
        frame(b"pong", 0xA),  # a browser must mask
    ],
    ids=["long-ping", "fragmented-ping", "rsv-ping", "unmasked-pong"],
)
def test_bad_control_frames_from_the_browser_fail_with_1002(harness, taken, bad):
    """Control frames the fast path does not pass are Autobahn's to refuse: 1002, and nothing
    after them is relayed."""
    browser, upstream = joined(harness)
    first = from_browser(b"before")
    browser.sendData(first + bad + from_browser(b"after the bad frame"))
    harness.flush()
    assert upstream.messages == [(b"before", False)]
    assert upstream.pings == [] and upstream.pongs == []
    assert taken[0] == len(first)
    assert browser.closed[1] == 1002


@pytest.mark.parametrize(
    "bad",
    [
        frame(b"ping", 0x9, mask=b"abcd"),  # a server must not mask
        frame(b"x" * 126, 0xA),
        frame(b"pong", 0xA, fin=False),
    ],
    ids=["masked-ping", "long-pong", "fragmented-pong"],
)
def test_bad_control_frames_from_the_upstream_never_reach_the_browser(harness, taken, bad):
    """From the upstream too, a bad control frame is not passed on byte for byte: Autobahn
    fails the upstream leg with 1002, and the browser hears 1014."""
    browser, upstream = joined(harness)
    first = frame(b"before")
    upstream.sendData(first + bad + frame(b"after the bad frame"))
    harness.flush()
    assert browser.pings == [] and browser.pongs == []
    assert browser.messages == [(b"before", False)]
    assert taken[0] == len(first)
    assert upstream.closed[1] == 1002 and browser.closed[1] == 1014


def test_a_close_hands_the_rest_to_autobahn(harness, taken):
    """A close frame after a message: the message goes fast, the close through Autobahn, and
    what follows the close is dropped (RFC 6455, 5.5.1)."""
    browser, upstream = joined(harness)
    first = from_browser(b"one")
    close = from_browser(struct.pack("!H", 1000) + b"bye", 0x8)
    browser.sendData(first + close + from_browser(b"after"))
    harness.flush()
    assert upstream.messages == [(b"one", False)]
    assert upstream.closed == (True, 1000, "bye")
    assert browser.closed == (True, 1000, "bye")
    assert taken[0] == len(first)


def test_fragments_and_split_frames_are_relayed_whole(harness, taken):
    """A fragmented message, and a frame split across two reads, both arrive intact."""
    browser, upstream = joined(harness)
    browser.sendData(from_browser(b"frag", fin=False) + from_browser(b"mented", 0x0))
    harness.flush()
    split = from_browser(b"s" * 1000)
    browser.sendData(split[:10])
    harness.flush()
    browser.sendData(split[10:])
    harness.flush()
    assert upstream.messages == [(b"fragmented", False), (b"s" * 1000, False)]
    assert sum(taken) == 0


def test_invalid_utf8_after_a_valid_message_fails_with_1007(harness):
    """The valid message before it is relayed; the invalid one fails both legs with 1007."""
    browser, upstream = joined(harness)
    browser.sendData(from_browser(b"fine") + from_browser(b"\xff\xfe"))
    harness.flush()
    assert upstream.messages == [(b"fine", False)]
    assert browser.closed[1] == 1007
    assert upstream.closed[1] == 1007


def test_a_message_over_the_limit_fails_with_1009(make_harness):
    """The size limit holds for whole small frames too."""
    harness = make_harness(max_message_size=100)
    browser, upstream = joined(harness)
    browser.sendData(from_browser(b"a" * 100) + from_browser(b"b" * 101))
    harness.flush()
    assert upstream.messages == [(b"a" * 100, False)]
    assert browser.closed[1] == 1009
    assert upstream.closed[1] == 1009


@pytest.mark.parametrize(
    "bad",
    [
        frame(b"unmasked"),  # a browser must mask
        frame(b"rsv", rsv=0x40, mask=b"abcd"),  # no extension was agreed
        frame(b"", opcode=0x3, mask=b"abcd"),  # a reserved opcode
        non_minimal(b"short", mask=b"abcd"),  # lengths use the shortest form
    ],
    ids=["unmasked", "rsv", "reserved-opcode", "non-minimal-length"],
)
def test_protocol_errors_from_the_browser_fail_with_1002(harness, bad):
    """What the fast path does not recognise goes to Autobahn, which fails the leg with 1002;
    the upstream is told the browser went away."""
    browser, upstream = joined(harness)
    browser.sendData(from_browser(b"before") + bad)
    harness.flush()
    assert upstream.messages == [(b"before", False)]
    assert browser.closed[1] == 1002
    assert upstream.closed[1] == 1001


@pytest.mark.parametrize(
    "bad",
    [
        frame(b"masked", mask=b"abcd"),  # a server must not mask
        frame(b"rsv", rsv=0x40),
        frame(b"", opcode=0x3),
        non_minimal(b"short"),
    ],
    ids=["masked", "rsv", "reserved-opcode", "non-minimal-length"],
)
def test_protocol_errors_from_the_upstream_fail_with_1002(harness, bad):
    """Upstream frames go to the browser byte for byte only when they are right: anything else
    goes to Autobahn, which fails the upstream leg with 1002; the browser gets 1014."""
    browser, upstream = joined(harness)
    upstream.sendData(frame(b"before") + bad)
    harness.flush()
    assert browser.messages == [(b"before", False)]
    assert upstream.closed[1] == 1002
    assert browser.closed[1] == 1014


@pytest.mark.parametrize("side", ["browser", "upstream"])
def test_a_close_reason_not_utf8_fails_the_other_side_as_a_protocol_error(harness, side):
    """A close whose reason is not UTF-8 fails its leg with 1007, as Autobahn does; the other
    side hears of a failed peer (1014 toward the browser, 1001 toward the upstream), not 1007,
    which would say that a message it received was bad (and which the client does not retry)."""
    browser, upstream = joined(harness)
    close = struct.pack("!H", 4000) + b"\xff\xfe"
    if side == "browser":
        browser.sendData(frame(close, opcode=0x8, mask=b"abcd"))
    else:
        upstream.sendData(frame(close, opcode=0x8))
    harness.flush()
    assert (browser.closed[1], upstream.closed[1]) == ((1007, 1001) if side == "browser" else (1014, 1007))


def test_frames_after_a_close_are_not_relayed(harness, taken):
    """Once the browser closed, frames it sends after its close frame are not relayed."""
    browser, upstream = joined(harness)
    close = frame(struct.pack("!H", 4000) + b"bye", opcode=0x8, mask=b"wxyz")
    browser.sendData(from_browser(b"last") + close + from_browser(b"too late"))
    harness.flush()
    assert upstream.messages == [(b"last", False)]
    assert upstream.closed[1] == 4000
    assert browser.closed[1] == 4000


def test_a_compressed_leg_keeps_the_pair_on_autobahns_path(make_harness, taken):
    """With permessage-deflate on either leg, every frame goes through Autobahn (which inflates
    and deflates); without it, the same relay takes the fast path."""
    harness = make_harness(compression="browser")
    browser = harness.browser(deflate=True)
    upstream = harness.upstream()
    browser.sendMessage(b"squeezed")
    upstream.sendMessage(b"and back")
    harness.flush()
    assert upstream.messages == [(b"squeezed", False)]
    assert browser.messages == [(b"and back", False)]
    assert taken == []
    plain_browser = harness.browser()  # offers no compression: both legs plain
    plain_upstream = harness.upstream()
    plain_browser.sendData(from_browser(b"fast"))
    harness.flush()
    assert plain_upstream.messages == [(b"fast", False)]
    assert taken == [len(from_browser(b"fast"))]


# Cases an independent review found untested: reads that end inside a frame, the length
# boundaries, invalid UTF-8 from either side, and the fast path's guards.

SIDES = ["browser", "upstream"]  # the side that sends


def sent_by(side, payload, opcode=0x1, fin=True):
    """A frame as `side` sends it: masked from a browser, unmasked from an upstream."""
    return from_browser(payload, opcode, fin) if side == "browser" else frame(payload, opcode, fin)


def sender_and_receiver(harness, side):
    """Join a pair; return (the peer on `side`, the peer on the other side)."""
    browser, upstream = joined(harness)
    return (browser, upstream) if side == "browser" else (upstream, browser)


def relay_legs(harness, side):
    """The relay's own legs of the only pair: (the one `side` sends to, the one it relays to)."""
    browser_leg = next(iter(harness.factory.live))
    legs = (browser_leg, browser_leg.relay.upstream)
    return legs if side == "browser" else legs[::-1]


def counted(harness, side):
    """(messages, bytes) the relay's counters show as relayed from `side`."""
    metrics = harness.factory.metrics
    return metrics.traffic("messages")[side], metrics.traffic("bytes")[side]


def text_of(n):
    """n bytes of valid UTF-8, mostly two-byte characters (so that the text is checked)."""
    return ("ж" * (n // 2) + "x" * (n % 2)).encode()


def binary_of(n):
    """n bytes of every value, invalid UTF-8 included (binary is never checked)."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def flush_first(harness, peer):
    """Move bytes on `peer`'s own connection until it goes quiet, then on all of them."""
    next(pump for pump in harness.pumps if peer in (pump.client, pump.server)).flush()
    harness.flush()


def drain(harness, leg):
    """Let Autobahn write out what `leg` has queued: one chunk per reactor turn."""
    for _ in range(1000):
        if not leg.send_queue and not leg.triggered:
            return
        harness.advance(0.001)
    raise AssertionError("the send queue never drained")


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("length", [10, 300], ids=["short", "16-bit-length"])
@pytest.mark.parametrize("cut", [1, 2, 3, 5, 8, "mid-payload"])
def test_a_frame_cut_after_a_fast_one_arrives_whole_and_in_order(harness, taken, side, length, cut):
    """A read ending inside a frame: the frames before and after it go fast, all arrive whole, in order."""
    sender, receiver = sender_and_receiver(harness, side)
    first = sent_by(side, b"first")
    second_payload = text_of(length)  # cut inside a character, too
    second = sent_by(side, second_payload)
    header = len(second) - length
    at = header + (length // 2 | 1) if cut == "mid-payload" else cut
    sender.sendData(first + second[:at])
    harness.flush()
    assert receiver.messages == [(b"first", False)]
    sender.sendData(second[at:])
    harness.flush()
    third = sent_by(side, b"\x00\x01", 0x2)
    sender.sendData(third)
    harness.flush()
    assert receiver.messages == [(b"first", False), (second_payload, False), (b"\x00\x01", True)]
    # Fast for the first frame and, once Autobahn finished the cut one, for the third again.
    assert taken == [len(first), len(third)]
    assert counted(harness, side) == (3, 5 + length + 2)
    assert sender.closed is None and receiver.closed is None


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "binary"])
@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 1000, 65535])
def test_payloads_up_to_65535_bytes_go_fast_and_exact(harness, taken, monkeypatch, side, opcode, length):
    """Each length up to 65,535 arrives exact: re-masked toward the upstream, byte for byte to the browser."""
    monkeypatch.setattr(fastframes, "_new_key", lambda: b"\x0a\x0b\x0c\x0d")
    sender, receiver = sender_and_receiver(harness, side)
    payload = text_of(length) if opcode == 0x1 else binary_of(length)
    chunk = sent_by(side, payload, opcode)
    before = len(receiver.raw)
    sender.sendData(chunk)
    harness.flush()
    assert receiver.messages == [(payload, opcode == 0x2)]
    expected = frame(payload, opcode, mask=b"\x0a\x0b\x0c\x0d") if side == "browser" else chunk
    assert receiver.raw[before:] == expected
    assert taken == [len(chunk)]
    assert counted(harness, side) == (1, length)
    assert sender.closed is None and receiver.closed is None


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "binary"])
def test_a_65536_byte_payload_goes_through_autobahn_intact(harness, taken, side, opcode):
    """One byte past the fast path's limit (a 64-bit length): Autobahn relays it, intact."""
    sender, receiver = sender_and_receiver(harness, side)
    payload = text_of(65536) if opcode == 0x1 else binary_of(65536)
    chunk = sent_by(side, payload, opcode)
    sender.sendData(chunk)
    harness.flush()
    assert receiver.messages == [(payload, opcode == 0x2)]
    assert taken == [0]
    assert counted(harness, side) == (1, 65536)
    assert sender.closed is None and receiver.closed is None


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    "bad",
    [b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xff"],
    ids=["surrogate", "overlong", "above-10FFFF", "truncated", "lone-FF"],
)
def test_invalid_utf8_after_a_fast_message_fails_both_legs_with_1007(harness, taken, side, bad):
    """Invalid UTF-8 in a whole text frame: the message before it is relayed, then both legs get 1007."""
    sender, receiver = sender_and_receiver(harness, side)
    first = sent_by(side, b"fine")
    sender.sendData(first + sent_by(side, b"price: " + bad) + sent_by(side, b"never"))
    harness.flush()
    assert receiver.messages == [(b"fine", False)]
    assert sender.closed[1] == 1007
    assert receiver.closed[1] == 1007
    assert taken == [len(first)]
    assert counted(harness, side) == (1, 4)  # nothing of the refused message went on


@pytest.mark.parametrize("side", SIDES)
def test_a_frame_waits_behind_what_the_destination_leg_has_queued(harness, taken, side):
    """A frame is relayed behind what the destination leg has queued, never into a queued frame."""
    sender, receiver = sender_and_receiver(harness, side)
    _, destination = relay_legs(harness, side)
    destination.sendFrame(opcode=0x1, payload=b"queued first", chopsize=3)
    assert destination.send_queue  # written one chunk per reactor turn
    sender.sendData(sent_by(side, b"then this"))
    harness.flush()
    drain(harness, destination)
    assert receiver.messages == [(b"queued first", False), (b"then this", False)]
    assert taken == [0]
    again = sent_by(side, b"fast again")
    sender.sendData(again)  # nothing queued any more: the fast path takes it
    harness.flush()
    assert receiver.messages[-1] == (b"fast again", False)
    assert taken == [0, len(again)]
    assert counted(harness, side) == (2, len(b"then this") + len(b"fast again"))
    assert sender.closed is None and receiver.closed is None


@pytest.mark.parametrize("side", SIDES)
def test_nothing_is_relayed_to_a_leg_that_is_closing(harness, taken, side):
    """Nothing is written after the destination leg's close, even before the pair knows it is closing."""
    sender, receiver = sender_and_receiver(harness, side)
    _, destination = relay_legs(harness, side)
    before = len(receiver.raw)
    destination.sendCloseFrame(1000)  # directly: the relay has not started closing the pair
    sender.sendData(sent_by(side, b"too late"))
    flush_first(harness, sender)  # the frame arrives before the close handshake completes
    assert taken and set(taken) == {0}  # the close reply is offered too, and not taken
    assert receiver.messages == []
    assert receiver.closed[1] == 1000
    close = receiver.raw[before:]
    assert close[0] == 0x88 and len(close) == (8 if side == "browser" else 4)  # a close, then nothing


@pytest.mark.parametrize("side", SIDES)
def test_whole_frames_after_a_fragmented_message_keep_their_place(harness, taken, side):
    """Whole frames after a fragmented message spread over reads arrive in order; then fast again."""
    sender, receiver = sender_and_receiver(harness, side)
    sender.sendData(sent_by(side, b"frag", fin=False))
    harness.flush()
    sender.sendData(sent_by(side, b"mented", 0x0) + sent_by(side, b"after") + sent_by(side, b"\x01", 0x2))
    harness.flush()
    last = sent_by(side, b"last")
    sender.sendData(last)
    harness.flush()
    assert receiver.messages == [
        (b"fragmented", False), (b"after", False), (b"\x01", True), (b"last", False),
    ]
    assert taken == [0, len(last)]
    assert sender.closed is None and receiver.closed is None


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("opening", [b"", b"frag"], ids=["empty-first-fragment", "first-fragment"])
def test_a_new_message_inside_a_fragmented_one_is_a_protocol_error(harness, taken, side, opening):
    """A new message inside an open fragmented one is not relayed: 1002 (the other side 1001/1014)."""
    sender, receiver = sender_and_receiver(harness, side)
    sender.sendData(sent_by(side, opening, fin=False))
    harness.flush()
    sender.sendData(sent_by(side, b"intruder"))
    harness.flush()
    assert receiver.messages == []
    # The open message once something of it went out (an empty fragment sends nothing), never the intruder.
    assert counted(harness, side) == ((1, len(opening)) if opening else (0, 0))
    assert sender.closed[1] == 1002
    assert receiver.closed[1] == (1001 if side == "browser" else 1014)
    assert taken == [0]  # only the first read was offered to the fast path


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("busy", ["queued", "mid-message", "closing"])
def test_forward_takes_nothing_while_the_destination_cannot_take_a_frame(harness, side, busy):
    """While the destination is queued, mid-message or closing, forward takes nothing and writes nothing."""
    sender, receiver = sender_and_receiver(harness, side)
    source, destination = relay_legs(harness, side)
    if busy == "queued":
        destination.sendFrame(opcode=0x1, payload=b"queued", chopsize=2)
    elif busy == "mid-message":
        sender.sendData(sent_by(side, b"frag", fin=False))
        harness.flush()
    else:
        destination.sendCloseFrame(1000)
    pending = list(destination.transport.stream)
    assert fastframes.forward(source, sent_by(side, b"probe")) == 0
    assert destination.transport.stream == pending  # nothing written
    assert counted(harness, side) == ((1, 4) if busy == "mid-message" else (0, 0))
    if busy == "mid-message":
        sender.sendData(sent_by(side, b"ment", 0x0))
    harness.flush()
    drain(harness, destination)
    assert receiver.messages == {
        "queued": [(b"queued", False)], "mid-message": [(b"fragment", False)], "closing": [],
    }[busy]


# The relay's own keepalive pings: answered on the fast path, never passed through.

def quiet_peers(make_harness):
    """A joined pair with keepalives every 10 s (5 s to answer), whose peers record pings but
    do not answer them: each test sends the answers itself."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0)
    browser, upstream = joined(harness)
    browser.onPing = browser.pings.append
    upstream.onPing = upstream.pings.append
    return harness, browser, upstream


@pytest.mark.parametrize("side", SIDES)
def test_the_answer_to_a_keepalive_stops_between_messages(make_harness, taken, side):
    """The pong answering the relay's ping, read between two messages, is taken by the fast
    path and not passed on; the messages around it are, exactly."""
    harness, browser, upstream = quiet_peers(make_harness)
    sender, receiver = (browser, upstream) if side == "browser" else (upstream, browser)
    harness.advance(10.5)
    [own_ping] = sender.pings
    receiver.sendPong(receiver.pings[0])  # the other leg's keepalive, answered as usual
    harness.flush()
    del taken[:]
    chunk = sent_by(side, b"one") + sent_by(side, own_ping, 0xA) + sent_by(side, b"two")
    before = len(receiver.raw)
    sender.sendData(chunk)
    harness.flush()
    assert receiver.messages == [(b"one", False), (b"two", False)]
    assert receiver.pongs == []
    if side == "upstream":  # byte for byte, less the pong
        assert receiver.raw[before:] == frame(b"one") + frame(b"two")
    assert taken == [len(chunk)]
    harness.advance(6.0)  # past the ping's timeout: answered, so nothing happens
    assert browser.closed is None and upstream.closed is None


@pytest.mark.parametrize("side", SIDES)
def test_a_keepalive_answered_on_the_fast_path_is_repeated_an_interval_later(make_harness, taken, side):
    """After the answer the next ping comes one interval later; left unanswered, it ends the
    pair with 1001 toward the other side (the dead peer's own leg is dropped)."""
    harness, browser, upstream = quiet_peers(make_harness)
    sender, receiver = (browser, upstream) if side == "browser" else (upstream, browser)
    harness.advance(10.5)
    receiver.sendPong(receiver.pings[0])
    sender.sendData(sent_by(side, sender.pings[0], 0xA))
    harness.flush()
    assert taken[-1] > 0
    harness.advance(9.0)
    assert len(sender.pings) == 1
    harness.advance(1.5)
    assert len(sender.pings) == 2 and sender.pings[1] != sender.pings[0]
    receiver.sendPong(receiver.pings[1])
    harness.flush()
    harness.advance(6.0)
    assert receiver.closed[1] == (1001 if side == "browser" else 1014)


def test_keepalive_pings_are_masked_toward_the_upstream_only(make_harness, monkeypatch):
    """The relay's ping to the upstream is masked with a fresh key (a client's frames must be);
    to the browser it is not (a server's must not be). Both carry Autobahn's payload: the time
    sent (8 bytes) and a sequence number (4)."""
    monkeypatch.setattr(fastframes, "_new_key", lambda: b"\x0a\x0b\x0c\x0d")
    harness, browser, upstream = quiet_peers(make_harness)
    browser_before, upstream_before = len(browser.raw), len(upstream.raw)
    harness.advance(10.5)
    [to_upstream], [to_browser] = upstream.pings, browser.pings
    assert upstream.raw[upstream_before:] == frame(to_upstream, 0x9, mask=b"\x0a\x0b\x0c\x0d")
    assert browser.raw[browser_before:] == frame(to_browser, 0x9)
    for payload in (to_upstream, to_browser):
        assert len(payload) == 12 and struct.unpack(">L", payload[8:])[0] == 1


def test_a_pong_that_is_not_the_answer_passes_through(make_harness, taken):
    """While the relay waits for its own pong, any other pong goes on to the other side, and
    the relay keeps waiting for its own."""
    harness, browser, upstream = quiet_peers(make_harness)
    harness.advance(10.5)
    upstream.sendPong(upstream.pings[0])
    browser.sendData(from_browser(b"unsolicited", 0xA))
    harness.flush()
    assert upstream.pongs == [b"unsolicited"]
    harness.advance(6.0)
    assert upstream.closed[1] == 1001  # the browser never answered the relay's own ping


def test_traffic_stands_in_for_the_answer_and_a_late_answer_stops_here(make_harness, taken):
    """A message received while a keepalive is pending counts as its answer (Autobahn's
    autoPingRestartOnAnyTraffic); the pong that comes later still stops at the relay."""
    harness, browser, upstream = quiet_peers(make_harness)
    harness.advance(10.5)
    [own_ping] = browser.pings
    upstream.sendPong(upstream.pings[0])
    browser.sendData(from_browser(b"still here"))
    harness.flush()
    harness.advance(6.0)  # past the timeout
    assert browser.closed is None
    browser.sendData(from_browser(own_ping, 0xA))
    harness.flush()
    assert upstream.pongs == []
    assert upstream.messages == [(b"still here", False)]


def test_a_late_answer_after_traffic_stood_in_does_not_add_a_ping(make_harness, taken):
    """The relay's pong arriving after a message already stood in for it changes nothing: the
    next ping comes an interval after the message, and only one."""
    harness, browser, upstream = quiet_peers(make_harness)
    harness.advance(10.5)  # the pings went out at 10
    [own_ping] = browser.pings
    upstream.sendPong(upstream.pings[0])
    # Stands in for the pong: the next ping an interval later, at 20.5 (by 20.6: the wheel's tick).
    browser.sendData(from_browser(b"still here"))
    harness.flush()
    harness.advance(0.5)  # 11
    browser.sendData(from_browser(own_ping, 0xA))
    harness.flush()
    harness.advance(9.4)  # 20.4
    assert len(browser.pings) == 1
    harness.advance(0.4)  # 20.8
    assert len(browser.pings) == 2
    harness.advance(0.7)  # 21.5: no other ping for the late pong (that would come at 21)
    assert len(browser.pings) == 2


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
@pytest.mark.parametrize("length", [0, 1, 2, 5, 123, 125])
def test_legs_frame_control_frames_as_autobahn_would(harness, monkeypatch, opcode, length):
    """A close, ping or pong a leg sends is, byte for byte, the frame Autobahn would have sent:
    masked with a fresh key toward the upstream, unmasked toward the browser."""
    from autobahn.websocket.protocol import WebSocketProtocol

    from chatrelay import masking

    def fixed_key():
        return b"\x0a\x0b\x0c\x0d"

    monkeypatch.setattr(masking, "KEYS", types.SimpleNamespace(key=fixed_key))  # Autobahn's keys
    monkeypatch.setattr(fastframes, "_new_key", fixed_key)  # the relay's own
    joined(harness)
    browser_leg, upstream_leg = relay_legs(harness, "browser")
    payload = bytes(range(7, 7 + length))
    for leg in (browser_leg, upstream_leg):
        sent = []
        monkeypatch.setattr(leg, "sendData", lambda data, sync=False, chopsize=None: sent.append(data))
        leg.sendFrame(opcode=opcode, payload=payload)
        WebSocketProtocol.sendFrame(leg, opcode=opcode, payload=payload)
        ours, autobahns = sent
        assert ours == autobahns
        assert bool(ours[1] & 0x80) == (leg is upstream_leg)
