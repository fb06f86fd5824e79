"""Differential fuzz test: the fast path (chatrelay/fastframes.py) against Autobahn's parser alone.

Why: the fast path is an optimisation and must be invisible. Whatever a browser or an upstream
sends, the peer on the other side must observe exactly what it would if every byte went through
Autobahn, the parser the relay trusts for the protocol.

How: for each seed a random scenario is generated: frames sent by the browser, the upstream or
both (text, ASCII or multi-byte; binary; pings and pongs with 0-125 byte payloads; sizes at the
boundaries 0, 125, 126, 65535, 65536 and the relay's size limit; fragmented messages with pings
and pongs between the fragments), in 60% of them one of FAULTS (bad UTF-8, also split
across fragments; RSV bits; a reserved opcode; a long or fragmented control frame; wrong
masking; a non-minimal length; a stray continuation; a new message inside a fragmented one; a
message over the limit), maybe a close frame, valid or not, maybe with frames after it. The
same bytes, cut at the same random points, are fed into two in-memory relays (tests/memory.py):
one as shipped, one whose `fastframes.forward` always takes 0 bytes. That is Autobahn alone:
LegMixin.dataReceived then passes every read, unchanged, to Autobahn's `_dataReceived`, on the
same branch as with the fast path (legs.py), and `forward` is all the fast path does on a read.

What is compared, for each peer: the ordered events it sees (messages with their type and
payload, pings, pongs, and its close with wasClean, code and reason) and whether its connection
was dropped; and the relay's report (outcome, each leg's close, messages and bytes each way).
Messages are compared whole, not frame by frame: Autobahn sends a message that arrives in
pieces as one frame per piece, where the fast path passes a frame on as it came, and a peer
reassembles both into the same message.

Each peer answers the pings it receives and answers a close, never inside a frame of its
script (ScriptedSender). In about a third of the scenarios the relay's keepalive is on, with a
short interval and time passing between reads, so that the answers to the relay's own pings
(which the relay must stop, not pass on) come alone, mixed with other frames, or late, after
traffic that stands in for them; their payloads hold the harness clock's time, not the wall's.
"""

import hashlib
import math
import struct
from random import Random
from types import SimpleNamespace

import pytest

from chatrelay import fastframes, legs
from tests.memory import Harness
from tests.test_fastframes import frame, joined, non_minimal

SCENARIOS = 600  # seeds 0..599: 7-12 s in all on a 2-core machine
LIMITS = (125, 1000, 65535, 65536, 70000)  # the relay's max message size, one per scenario
BOUNDARY_SIZES = (0, 1, 2, 3, 4, 5, 124, 125, 126, 127)
BIG_SIZES = (65535, 65536)
BAD_UTF8 = (b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82")
VALID_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1014, 3000, 3999, 4000, 4999)
INVALID_CLOSE_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)
FAULTS = (
    "bad-utf8", "bad-utf8-in-last-fragment", "bad-utf8-across-fragments", "rsv", "reserved-opcode",
    "long-control", "fragmented-control", "wrong-masking", "non-minimal-16", "non-minimal-64",
    "length-msb", "stray-continuation", "new-message-inside-fragmented", "over-limit",
    "over-limit-fragmented",
)
CLOSES = ("close-empty", "close-valid", "close-invalid-code", "close-bad-reason", "close-1-byte")
SETTLE_SECONDS = 35  # after the last read; the harness's browser waits 30 s for a close answer
KEEPALIVE_SHARE = 0.35  # of the scenarios: the relay pings each leg, and must stop the answers
KEEPALIVE_INTERVAL = 3.0  # short, so that keepalive pings come while the peers still send
KEEPALIVE_TIMEOUT = 2.0
PAUSES = (0.5, 1.0, 2.0, 2.5, 3.0, 3.5, 5.0, 7.0)  # seconds that may pass after a step

# Seeds where the two relays differ because of a real bug in the fast path, kept as regression
# cases: {seed: reason}. None found so far.
KNOWN_DISCREPANCIES = {}


# Frames.

def sent_as(rng, side, payload, opcode=0x1, fin=True, rsv=0, masked=None):
    """A frame as `side` sends it: masked with a seeded key from a browser, or as `masked` says."""
    if masked is None:
        masked = side == "browser"
    if not masked:
        return frame(payload, opcode, fin, rsv=rsv)
    key = rng.randbytes(4)
    if len(payload) <= 1000:
        return frame(payload, opcode, fin, mask=key, rsv=rsv)
    # What frame() builds, masked with ints: frame() takes 0.1 s to mask 64 KiB byte by byte.
    plain = frame(payload, opcode, fin, rsv=rsv)
    header, n = len(plain) - len(payload), len(payload)
    xored = int.from_bytes(payload, "little") ^ int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return bytes([plain[0], plain[1] | 0x80]) + plain[2:header] + key + xored.to_bytes(n, "little")


def non_minimal_64(rng, side, payload):
    """A text frame whose length (below 65,536) is sent in the 64-bit form: a protocol error."""
    whole = sent_as(rng, side, payload)
    header = 2 if len(payload) < 126 else 4
    return bytes([whole[0], (whole[1] & 0x80) | 127]) + struct.pack("!Q", len(payload)) + whole[header:]


def valid_text(rng, n):
    """Exactly n bytes of valid UTF-8: ASCII, or a mix of 1- to 4-byte characters."""
    if n > 300:  # long: a repeated unit, cheap to build
        unit = rng.choice(["a", "ж", "€", "😀", "aж€😀"]).encode()
        return unit * (n // len(unit)) + b"x" * (n % len(unit))
    if rng.random() < 0.4:
        return bytes(rng.randrange(32, 127) for _ in range(n))
    out = []
    left = n
    while left:  # each character takes at least one byte
        char = rng.choice(["q", "é", "ж", "€", "中", "😀", "\U0010ffff", "\ufffd"]).encode()
        if len(char) > left:
            char = b"z"
        out.append(char)
        left -= len(char)
    return b"".join(out)


def payload_of(rng, binary, n):
    """A message payload of n bytes: random binary (invalid UTF-8 too), or valid UTF-8 text."""
    return rng.randbytes(n) if binary else valid_text(rng, n)


def message_size(rng, limit):
    """A valid message size, at most `limit`: mostly small, often a boundary, sometimes 64 KiB."""
    roll = rng.random()
    if roll < 0.55:
        size = rng.randint(0, 130)
    elif roll < 0.8:
        size = rng.choice(BOUNDARY_SIZES + (limit - 1, limit))
    elif roll < 0.95:
        size = rng.randint(131, 3000)
    else:
        size = rng.choice(BIG_SIZES)
    return min(size, limit)


def data_frame(rng, side, payload, binary, label=""):
    """A whole text or binary message in one frame, as (label, bytes)."""
    name = label or ("binary" if binary else "text")
    return f"{name}[{len(payload)}]", sent_as(rng, side, payload, 0x2 if binary else 0x1)


def control_frames(rng, side, most=2):
    """Zero to `most` pings and pongs, as (label, bytes) frames, with 0-125 byte payloads."""
    frames = []
    for _ in range(rng.randint(0, most)):
        opcode = rng.choice([0x9, 0xA])
        payload = rng.randbytes(rng.choice([0, 1, 125, rng.randint(0, 125)]))
        name = "ping" if opcode == 0x9 else "pong"
        frames.append((f"{name}[{len(payload)}]", sent_as(rng, side, payload, opcode)))
    return frames


def fragments(rng, side, payload, binary, cuts=None):
    """A message as fragments cut at `cuts` (default: at random), maybe pings and pongs between."""
    if cuts is None:
        cuts = sorted(rng.randint(0, len(payload)) for _ in range(rng.randint(1, 3)))
    edges = [0] + list(cuts) + [len(payload)]
    frames = []
    kind = "binary" if binary else "text"
    for index, (start, end) in enumerate(zip(edges, edges[1:])):
        opcode = (0x2 if binary else 0x1) if index == 0 else 0x0
        fin = index == len(edges) - 2
        label = f"{kind}-fragment{index}{'-fin' if fin else ''}[{end - start}]"
        frames.append((label, sent_as(rng, side, payload[start:end], opcode, fin)))
        if not fin and rng.random() < 0.4:
            frames.extend(control_frames(rng, side))
    return frames


def valid_item(rng, side, limit):
    """One valid thing `side` may send: a whole message, a ping or pong, or a fragmented message."""
    roll = rng.random()
    if roll < 0.2:
        return control_frames(rng, side, most=1) or control_frames(rng, side, most=1)
    binary = rng.random() < 0.4
    payload = payload_of(rng, binary, message_size(rng, limit))
    if roll < 0.85:
        return [data_frame(rng, side, payload, binary)]
    return fragments(rng, side, payload, binary)


def fault_frames(rng, side, limit, kind):
    """The (label, bytes) frames of the fault `kind` (one of FAULTS) as `side` sends it."""
    bad = rng.choice(BAD_UTF8)
    text = valid_text(rng, rng.choice([0, 0, 1, 2, rng.randint(0, 20)]))  # often short: all checked
    binary = rng.random() < 0.5
    if kind == "bad-utf8":
        payload = text + bad + valid_text(rng, rng.choice([0, 0, rng.randint(0, 5)]))
        return [data_frame(rng, side, payload, False, f"text-bad-utf8{bad!r}")]
    if kind == "bad-utf8-in-last-fragment":  # a fragment that is invalid, or truncated at the end
        return fragments(rng, side, text + bad, False, cuts=[len(text)])
    if kind == "bad-utf8-across-fragments":  # each fragment may look fine; their join is not
        return fragments(rng, side, text + bad, False, cuts=[len(text) + rng.randint(0, len(bad))])
    if kind == "rsv":
        rsv = rng.choice([0x40, 0x20, 0x10, 0x70])
        opcode = rng.choice([0x1, 0x2, 0x9, 0xA])
        return [(f"rsv{rsv:#x}-opcode{opcode}", sent_as(rng, side, text, opcode, rsv=rsv))]
    if kind == "reserved-opcode":
        opcode = rng.choice([0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
        return [(f"opcode{opcode:#x}", sent_as(rng, side, text, opcode))]
    if kind == "long-control":
        opcode = rng.choice([0x8, 0x9, 0xA])
        if opcode == 0x8:
            payload = struct.pack("!H", 1000) + b"r" * 124
        else:
            payload = rng.randbytes(rng.choice([126, 127, 300]))
        return [(f"control{opcode}[{len(payload)}]", sent_as(rng, side, payload, opcode))]
    if kind == "fragmented-control":
        opcode = rng.choice([0x8, 0x9, 0xA])
        return [(f"control{opcode}-no-fin", sent_as(rng, side, b"ctl", opcode, fin=False))]
    if kind == "wrong-masking":
        opcode = rng.choice([0x1, 0x2, 0x9, 0xA, 0x8])
        payload = struct.pack("!H", 1000) if opcode == 0x8 else text
        wrong = side != "browser"
        return [(f"wrongly-masked-opcode{opcode}", sent_as(rng, side, payload, opcode, masked=wrong))]
    if kind == "non-minimal-16":
        mask = rng.randbytes(4) if side == "browser" else None
        return [(f"non-minimal-16[{len(text)}]", non_minimal(text, mask=mask))]
    if kind == "non-minimal-64":
        payload = valid_text(rng, rng.choice([0, 5, 125, 126, 1000]))
        return [(f"non-minimal-64[{len(payload)}]", non_minimal_64(rng, side, payload))]
    if kind == "length-msb":  # a 64-bit length with its most significant bit set
        mask = rng.randbytes(4) if side == "browser" else b""
        head = bytes([0x82, (0x80 if mask else 0) | 127]) + struct.pack("!Q", (1 << 63) | 5)
        return [("length-msb", head + mask + b"12345")]
    if kind == "stray-continuation":
        fin = rng.random() < 0.5
        return [(f"stray-continuation[{len(text)}]", sent_as(rng, side, text, 0x0, fin=fin))]
    if kind == "new-message-inside-fragmented":
        frames = fragments(rng, side, text, binary)[:1]  # the first fragment only
        frames.extend(control_frames(rng, side))
        intruder = valid_text(rng, rng.randint(0, 10))
        opcode, fin = rng.choice([0x1, 0x2]), rng.random() < 0.7
        return frames + [(f"intruder[{len(intruder)}]", sent_as(rng, side, intruder, opcode, fin=fin))]
    if kind == "over-limit":
        return [data_frame(rng, side, payload_of(rng, binary, limit + 1), binary, "over-limit")]
    assert kind == "over-limit-fragmented", kind
    return fragments(rng, side, payload_of(rng, binary, limit + rng.choice([1, 2, 100])), binary)


def close_frame(rng, side, kind):
    """A close frame of `kind` (one of CLOSES) sent by `side`, as (label, bytes)."""
    if kind == "close-empty":
        payload = b""
    elif kind == "close-valid":
        reason = valid_text(rng, rng.choice([0, 3, 20, 123]))
        payload = struct.pack("!H", rng.choice(VALID_CLOSE_CODES)) + reason
    elif kind == "close-invalid-code":
        payload = struct.pack("!H", rng.choice(INVALID_CLOSE_CODES)) + b"bye"
    elif kind == "close-bad-reason":
        payload = struct.pack("!H", 1000) + b"bad " + rng.choice(BAD_UTF8)
    else:
        assert kind == "close-1-byte", kind
        payload = b"\x03"
    return f"{kind}({payload[:2].hex()})[{len(payload)}]", sent_as(rng, side, payload, 0x8)


def side_frames(rng, side, limit, fault):
    """All `side` sends: valid items, maybe `fault` (labelled <fault>) and more, maybe a close."""
    frames = []
    for _ in range(rng.randint(0, 12)):
        frames.extend(valid_item(rng, side, limit))
    if fault is not None:
        faulty = fault_frames(rng, side, limit, fault)
        frames.append((f"<{fault}> {faulty[0][0]}", faulty[0][1]))
        frames.extend(faulty[1:])
        for _ in range(rng.randint(0, 2)):
            frames.extend(valid_item(rng, side, limit))
    if rng.random() < 0.35:
        frames.append(close_frame(rng, side, rng.choice(CLOSES)))
        if rng.random() < 0.3:  # nothing may follow a close: these must go nowhere
            frames.extend(valid_item(rng, side, limit))
    return frames


# Scenarios.

def reads_of(rng, frames):
    """The frames' bytes cut into reads: often at or near a frame boundary, sometimes not at all."""
    data = b"".join(piece for _, piece in frames)
    if not data:
        return []
    boundaries = []
    at = 0
    for _, piece in frames:
        at += len(piece)
        boundaries.append(at)
    cuts = set()
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8, 13])):
        roll = rng.random()
        if roll < 0.35:
            cuts.add(rng.choice(boundaries))
        elif roll < 0.7:
            cuts.add(rng.choice(boundaries) + rng.randint(-3, 9))
        else:
            cuts.add(rng.randint(1, len(data)))
    edges = [0] + sorted(cut for cut in cuts if 0 < cut < len(data)) + [len(data)]
    return [data[start:end] for start, end in zip(edges, edges[1:])]


def make_scenario(seed):
    """The scenario for `seed`: size limit, each side's frames, reads in steps, and timing."""
    rng = Random(seed)
    limit = rng.choice(LIMITS)
    senders = rng.choice([("browser",), ("upstream",), ("browser", "upstream")])
    faulty_side = rng.choice(senders) if rng.random() < 0.6 else None
    frames = {
        side: side_frames(rng, side, limit, rng.choice(FAULTS) if side == faulty_side else None)
        for side in senders
    }
    pending = {side: reads_of(rng, frames[side]) for side in senders}
    schedule = []
    for _ in range(sum(len(reads) for reads in pending.values())):  # at least one read a step
        ready = [side for side in senders if pending[side]]
        if not ready:
            break
        step = ready if len(ready) == 2 and rng.random() < 0.25 else [rng.choice(ready)]
        schedule.append([(side, pending[side].pop(0)) for side in step])
    timing = Random(f"timing {seed}")  # its own generator: the frames are as without timing
    keepalive = timing.random() < KEEPALIVE_SHARE
    pausing = 0.6 if keepalive else 0.3  # with keepalive, so that pings come between the reads
    pauses = [timing.choice(PAUSES) if timing.random() < pausing else 0.0 for _ in schedule]
    lead = timing.choice([0.0, KEEPALIVE_INTERVAL, KEEPALIVE_INTERVAL]) if keepalive else 0.0
    late = [side for side in senders if timing.random() < 0.5]
    return {"seed": seed, "limit": limit, "frames": frames, "schedule": schedule,
            "keepalive": keepalive, "lead": lead, "pauses": pauses, "late": late}


def scenario_text(scenario):
    """The scenario in words, for a failure message."""
    keepalive = "on" if scenario["keepalive"] else "off"
    lines = [f"seed {scenario['seed']}, max message size {scenario['limit']}, keepalive {keepalive}, "
             f"late answers from {scenario['late'] or 'neither side'}"]
    for side, frames in scenario["frames"].items():
        lines.append(f"{side} sends: " + ", ".join(label for label, _ in frames))
    steps = [
        "+".join(f"{side}:{len(read)}" for side, read in step) + (f" (then {pause} s)" if pause else "")
        for step, pause in zip(scenario["schedule"], scenario["pauses"])
    ]
    lines.append(f"after {scenario['lead']} s, reads (bytes): " + ", ".join(steps))
    return "\n".join(lines)


# Running a scenario.

def described(payload):
    """A payload as compared and shown: itself if short, else its length and a digest."""
    if len(payload) <= 40:
        return bytes(payload)
    return len(payload), hashlib.sha256(payload).hexdigest()[:16]


def record_events(peer):
    """Log every message, ping, pong and close `peer` (a memory.py Recorder) sees, in order."""
    events = []
    on_message, on_ping, on_pong, on_close = peer.onMessage, peer.onPing, peer.onPong, peer.onClose

    def message(payload, is_binary):
        """IWebSocketChannel API: logged, then recorded as usual."""
        events.append(("binary" if is_binary else "text", described(payload)))
        on_message(payload, is_binary)

    def ping(payload):
        """IWebSocketChannel API: logged, then answered with a pong (see ScriptedSender)."""
        events.append(("ping", described(payload)))
        on_ping(payload)

    def pong(payload):
        """IWebSocketChannel API: logged, then recorded as usual."""
        events.append(("pong", described(payload)))
        on_pong(payload)

    def close(was_clean, code, reason):
        """IWebSocketChannel API: logged, then recorded as usual."""
        events.append(("close", was_clean, code, reason))
        on_close(was_clean, code, reason)

    peer.onMessage, peer.onPing, peer.onPong, peer.onClose = message, ping, pong, close
    return events


class ScriptedSender:
    """Writes a peer's scripted reads, and what the peer sends itself never inside their frames.

    What the peer sends itself (pong answers, close replies) is held while the script stopped
    inside a frame, as a real peer never puts a frame inside another; if `late` (a busy peer),
    until one of the script's next reads, before or after it in the same read, so that the
    relay reads it mixed with other frames, and traffic may stand in for a keepalive's pong.
    """

    def __init__(self, peer, frames, late=False, rng=None):
        """`frames`: what the reads are cut from; `rng`: when late frames go."""
        self.write = peer.sendData
        self.boundaries = {0}
        at = 0
        for _, piece in frames:
            at += len(piece)
            self.boundaries.add(at)
        self.total = at
        self.late = late and at > 0
        self.rng = rng
        self.sent = 0
        self.held = []
        peer.sendData = self.peer_sends

    def peer_sends(self, data, sync=False, chopsize=None):
        """The peer's own sendData: held inside a frame, or if late while the script goes on."""
        if self.sent not in self.boundaries or (self.late and self.sent < self.total):
            self.held.append(data)
        else:
            self.write(data, sync, chopsize)

    def send(self, read):
        """Write the next read, and what the peer held, before or after it (late: maybe not yet)."""
        if self.held and self.sent in self.boundaries and self.rng.random() < 0.4:
            self.release()
        self.write(read)
        self.sent += len(read)
        if self.sent in self.boundaries and (
            not self.late or self.sent == self.total or self.rng.random() < 0.5
        ):
            self.release()

    def release(self):
        """Write what the peer held, in order."""
        held, self.held = self.held, []
        for data in held:
            self.write(data)


def wait(harness, seconds):
    """Let `seconds` pass a second at a time, settling after each; stop when no timer is left."""
    # A second at a time: a peer answers a keepalive ping before its timeout, as over a network.
    for _ in range(math.ceil(seconds)):
        if not harness.clock.getDelayedCalls():
            return
        harness.advance(min(1.0, seconds))
        seconds -= 1.0


def observe(scenario, monkeypatch, fast_path, taken=None):
    """Run `scenario` on a fresh relay, with or without the fast path: what the peers and relay saw."""
    # `taken`, if a list, gets (bytes the fast path took, bytes offered) for each read it is offered.
    interval = KEEPALIVE_INTERVAL if scenario["keepalive"] else 0.0
    harness = Harness(max_message_size=scenario["limit"], ping_interval=interval,
                      ping_timeout=KEEPALIVE_TIMEOUT)
    try:
        with monkeypatch.context() as patch:
            # The keepalive ping's payload holds the time sent: the harness's clock's, not the wall's.
            patch.setattr(legs, "time", SimpleNamespace(time_ns=lambda: int(harness.clock.seconds() * 1e9)))
            if not fast_path:
                patch.setattr(fastframes, "forward", lambda leg, data: 0)
            elif taken is not None:
                forward = fastframes.forward

                def counting(leg, data):
                    """The fast path as shipped, counting what it takes."""
                    used = forward(leg, data)
                    taken.append((used, len(data)))
                    return used

                patch.setattr(fastframes, "forward", counting)
            browser, upstream = joined(harness)
            peers = {"browser": browser, "upstream": upstream}
            events = {side: record_events(peer) for side, peer in peers.items()}
            senders = {
                side: ScriptedSender(
                    peers[side], frames, side in scenario["late"], Random(f"late {scenario['seed']} {side}")
                )
                for side, frames in scenario["frames"].items()
            }
            report = next(iter(harness.factory.live)).relay.report
            wait(harness, scenario["lead"])  # the first keepalive pings go out, maybe answered late
            for step, pause in zip(scenario["schedule"], scenario["pauses"]):
                for side, read in step:
                    senders[side].send(read)
                harness.flush()
                wait(harness, pause)
            wait(harness, SETTLE_SECONDS)
        return {
            "browser sees": events["browser"],
            "browser dropped": bool(browser.transport.disconnected),
            "upstream sees": events["upstream"],
            "upstream dropped": bool(upstream.transport.disconnected),
            "relay reports": (
                report.outcome,
                {side: str(close) for side, close in report.closes.items()},
                {side: (counted.messages, counted.bytes) for side, counted in report.directions.items()},
            ),
        }
    finally:
        harness.restore()


def first_difference(fast, slow):
    """Where two observations first differ, in words, for a failure message."""
    for key in fast:
        if fast[key] != slow[key]:
            if isinstance(fast[key], list):
                at = next((k for k, (a, b) in enumerate(zip(fast[key], slow[key])) if a != b),
                          min(len(fast[key]), len(slow[key])))
                return (f"\n{key}, from event {at}:\n  with the fast path: {fast[key][at:at + 3]}"
                        f"\n  Autobahn alone:     {slow[key][at:at + 3]}")
            return f"\n{key}:\n  with the fast path: {fast[key]}\n  Autobahn alone:     {slow[key]}"
    return ""


# Tests.

def seeds():
    """Every seed; those of KNOWN_DISCREPANCIES marked as strict expected failures."""
    for seed in range(SCENARIOS):
        if seed in KNOWN_DISCREPANCIES:
            yield pytest.param(seed, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DISCREPANCIES[seed]))
        else:
            yield seed


@pytest.mark.parametrize("seed", list(seeds()))
def test_the_fast_path_is_invisible_to_both_peers(monkeypatch, seed):
    """Fast path or not, the same reads give both peers the same events, closes and drops."""
    scenario = make_scenario(seed)
    with_fast_path = observe(scenario, monkeypatch, fast_path=True)
    autobahn_only = observe(scenario, monkeypatch, fast_path=False)
    explained = scenario_text(scenario) + first_difference(with_fast_path, autobahn_only)
    assert with_fast_path == autobahn_only, explained


def test_the_scenarios_cover_what_they_claim():
    """Every sender, fault, close, size and timing the module docstring lists occurs in the seeds."""
    # So that a change to the generator cannot quietly narrow the test.
    labels = set()
    senders = set()
    timings = set()
    for seed in range(SCENARIOS):
        scenario = make_scenario(seed)
        senders.add(tuple(scenario["frames"]))
        timings.add((scenario["keepalive"], bool(scenario["late"]), scenario["lead"] > 0))
        for frames in scenario["frames"].values():
            labels.update(label for label, _ in frames)
    assert senders == {("browser",), ("upstream",), ("browser", "upstream")}
    expected = [f"<{fault}>" for fault in FAULTS] + list(CLOSES) + [
        f"{kind}[{size}]" for kind in ("text", "binary") for size in (0, 125, 126, 65535, 65536)
    ] + ["ping[125]", "pong[0]", "text-fragment1", "binary-fragment2", "over-limit[65536]"]
    missing = [name for name in expected if not any(name in label for label in labels)]
    assert missing == []
    assert {(False, False, False), (False, True, False), (True, True, True), (True, False, True)} <= timings


def test_large_frames_are_masked_as_frame_masks_them():
    """sent_as masks a large payload as tests/test_fastframes.py's frame() does, only faster."""
    for n in (1001, 1002, 1003, 1004, 65535, 65536):
        payload = Random(n).randbytes(n)
        built = sent_as(Random(n), "browser", payload, 0x2, fin=n % 2 == 0)
        assert built == frame(payload, 0x2, n % 2 == 0, mask=Random(n).randbytes(4))


def test_the_fast_path_really_runs_in_the_scenarios(monkeypatch):
    """In the first 40 scenarios the fast path takes all of some reads, part of others, none of others."""
    # Else the comparison would compare Autobahn with itself.
    taken = []
    for seed in range(40):
        observe(make_scenario(seed), monkeypatch, fast_path=True, taken=taken)
    whole = sum(1 for used, offered in taken if used == offered)
    part = sum(1 for used, offered in taken if 0 < used < offered)
    none = sum(1 for used, _ in taken if used == 0)
    assert whole >= 20 and part >= 15 and none >= 15, (whole, part, none)
    assert sum(used for used, _ in taken) > 50_000
