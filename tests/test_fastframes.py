"""The fast path for whole-message frames (chatrelay/fastframes.py), in memory.

Each test writes raw frames in one read, so that the fast path sees them together, and checks
what the other side receives and how much the fast path itself took (the rest is Autobahn's).
"""

import os
import struct

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
    monkeypatch.setattr(fastframes, "_getrandbits", lambda bits: 0x0A0B0C0D)
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


def test_a_control_frame_hands_the_rest_to_autobahn(harness, taken):
    """A ping between two messages: the first message goes fast, the ping and the rest after it
    go through Autobahn, and all three arrive."""
    browser, upstream = joined(harness)
    first = from_browser(b"one")
    browser.sendData(first + from_browser(b"are you there", 0x9) + from_browser(b"two"))
    harness.flush()
    assert upstream.messages == [(b"one", False), (b"two", False)]
    assert upstream.pings == [b"are you there"]
    assert browser.pongs == [b"are you there"]
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
