"""The relay's behaviour contract, in memory: iosim connections on a Clock, no sockets."""

import collections
import gc
import os
import struct
import weakref

import pytest

from twisted.internet import error
from twisted.logger import LogLevel, formatEvent

from autobahn.websocket.types import ConnectionDeny

from chatrelay.limits import Limits
from chatrelay.relay import Direction, ReadValve
from tests.memory import (
    TOKEN,
    UPSTREAM_URL,
    UpstreamServer,
    close_frame_after_101,
    relay_query,
    upgrade_request,
)


def joined(harness):
    browser = harness.browser()
    upstream = harness.upstream()
    assert browser.opened and upstream.opened
    return browser, upstream


# Admission: refusals complete the handshake, then close with a code; Binance is never contacted.

@pytest.mark.parametrize(
    "query, code",
    [
        (relay_query(key="wrong"), 4401),
        (relay_query(key=None), 4401),
        (relay_query(key=TOKEN[:-1]), 4401),
        (relay_query() + "&key=" + TOKEN, 4401),
        (relay_query(target=None), 4400),
        (relay_query(target="not a url"), 4400),
        (relay_query(target="https://upstream.test/chat/x"), 4400),
        (relay_query() + "&target=" + "ws%3A%2F%2Fupstream.test%2Fchat%2Fy", 4400),
        (relay_query(target="ws://other.test/chat/x"), 4403),
        (relay_query(target="ws://upstream.test/admin"), 4403),
        (relay_query(target="ws://upstream.test/chat/..;x?token=T"), 4400),  # would request /chat/..
    ],
)
def test_refusals_close_with_their_code_and_never_contact_upstream(harness, query, code):
    """Each refusal reaches the browser as an accepted handshake followed by its close code."""
    browser = harness.browser(query)
    assert browser.opened
    assert browser.closed[0] is True
    assert browser.closed[1] == code
    assert harness.held == []


def test_key_is_checked_before_target(harness):
    """A wrong key with a bad target still says 4401: nothing about targets leaks to strangers."""
    browser = harness.browser(relay_query(key="wrong", target="ws://other.test/"))
    assert browser.closed[1] == 4401


def test_refusal_echoes_a_requested_subprotocol(harness):
    """A browser that asked for a subprotocol can still read the refusal's code."""
    browser = harness.browser(relay_query(key="wrong"), protocols=["chat"])
    assert browser.opened and browser.closed[1] == 4401


# Opening: the browser's handshake completes only once the upstream leg is open.

def test_browser_opens_only_after_upstream_opens(harness):
    """No 101 until the upstream's 101."""
    browser = harness.browser()
    assert not browser.opened
    assert len(harness.held) == 1
    upstream = harness.upstream()
    assert upstream.opened and browser.opened


def test_upstream_receives_the_target_exactly(harness):
    """The upstream request line carries the target's path and query unchanged."""
    _, upstream = joined(harness)
    assert upstream.http_request_uri == "/chat/c2c_key?token=TOKEN123&clientType=web"


def test_upstream_request_line_is_the_checked_path_and_query(harness):
    """The request line is built from the parts the allowlist checked, not from another parse of
    the URL (Autobahn's would drop a `;x` from the path; parse_target refuses `;` anyway)."""
    from chatrelay.targets import Target

    target = Target(url="ws://upstream.test/chat/..;x?q=1", scheme="ws", host="upstream.test", port=80,
                    path="/chat/..;x", query="q=1")
    assert harness.factory._upstream_factory(target, None).resource == "/chat/..;x?q=1"


def test_an_upstream_that_opens_after_its_browser_was_refused_is_closed_and_reported(harness, log_events):
    """The browser's request is refused (too much data before its 101) while the upstream is
    opening; the upstream opens anyway: it is closed with 1001, and the report says so."""
    client = harness.raw()
    client.transport.write(upgrade_request())
    harness.flush()
    factory, connecting = harness.held.pop(0)
    leg = factory.buildProtocol(None)
    upstream = harness.upstream_factory.buildProtocol(None)
    harness._connect_pair(upstream, leg, greet=False)
    connecting.callback(leg)
    next(iter(harness.factory.live)).dataReceived(b"x" * 9000)  # over --max-request-bytes: 400
    for _ in range(5):  # the upstream's 101 arrives before the browser's connection is gone
        harness.pumps[-1].flush()
    harness.flush()
    assert upstream.closed == (True, 1001, "browser went away")
    reports = [e for e in log_events if e.get("log_namespace") == "chatrelay.connection"]
    assert [e["upstream_close"] for e in reports] == ["1001/relay"]
    assert reports[0]["connect"] != "-"


def test_upstream_refused_gives_1014(harness):
    """A refused TCP connection is a 1014 that says so."""
    browser = harness.browser()
    harness.refuse_upstream(error.ConnectionRefusedError())
    assert browser.opened
    assert browser.closed == (True, 1014, "upstream refused the connection")


def test_upstream_unreachable_gives_1014(harness):
    """Any other connect failure is a 1014 too."""
    browser = harness.browser()
    harness.refuse_upstream(error.NoRouteError())
    assert browser.closed == (True, 1014, "upstream unreachable")


def test_upstream_timeout_gives_1014(harness):
    """An upstream that never connects is given up after --connect-timeout."""
    browser = harness.browser()
    harness.advance(9.9)
    assert not browser.opened
    harness.advance(0.2)
    assert browser.closed == (True, 1014, "upstream connect timed out")


def test_upstream_handshake_rejected_gives_1014_with_status(harness):
    """An upstream answering the upgrade with an HTTP error is named in the reason."""
    browser = harness.browser()
    harness.upstream_factory.protocol = RejectingUpstream
    harness.upstream()
    assert browser.closed == (True, 1014, "upstream refused the WebSocket handshake (HTTP 401)")


def test_browser_leaving_during_upstream_attempt_cancels_it(harness):
    """Nobody waits for an upstream whose browser is gone."""
    browser = harness.browser()
    (_, connecting), = harness.held
    browser.transport.loseConnection()
    harness.flush()
    assert connecting.called


def test_browser_request_refused_after_upstream_opened_closes_the_upstream(harness, log_events):
    """Autobahn can still refuse the browser's request once the upstream is open (here, an
    extension offer it cannot parse): the upstream hears 1001, and the connection is reported."""
    client = harness.raw()
    client.transport.write(upgrade_request(extra_headers="Sec-WebSocket-Extensions: permessage-deflate; bogus=1\r\n"))
    harness.flush()
    upstream = harness.upstream()
    assert bytes(client.received).startswith(b"HTTP/1.1 400 ")
    assert upstream.closed == (True, 1001, "browser went away")
    reports = [e for e in log_events if e.get("log_namespace") == "chatrelay.connection"]
    assert [(e["outcome"], e["upstream_close"]) for e in reports] == [("bad_request", "1001/relay")]
    assert harness.factory.live == set() and harness.factory.limits.total == 0


# Data.

def test_messages_keep_their_type_order_and_bytes(harness):
    """Text stays text, binary stays binary, both ways."""
    browser, upstream = joined(harness)
    sent_up = [(b'{"type":"ping"}', False), (bytes(range(256)), True), (b"", False), (b"", True)]
    for payload, is_binary in sent_up:
        browser.sendMessage(payload, isBinary=is_binary)
    sent_down = [("é€𝄞".encode(), False), (b"\x00" * 70000, True)]
    for payload, is_binary in sent_down:
        upstream.sendMessage(payload, isBinary=is_binary)
    harness.flush()
    assert upstream.messages == sent_up
    assert browser.messages == sent_down


def test_fragmented_message_is_relayed_whole(harness):
    """A message in several frames arrives as the same message."""
    browser, upstream = joined(harness)
    browser.sendMessage(b"x" * 1000, fragmentSize=100)
    harness.flush()
    assert upstream.messages == [(b"x" * 1000, False)]


def test_oversized_message_closes_both_legs_with_1009(make_harness):
    """A message over --max-message-size: 1009 to its sender, 1009 to the other side."""
    harness = make_harness(max_message_size=1000)
    browser, upstream = joined(harness)
    upstream.sendMessage(b"y" * 1001, isBinary=True)
    harness.flush()
    assert upstream.closed[1] == 1009
    assert browser.closed[1] == 1009


def test_oversized_browser_message_closes_with_1009(make_harness):
    """The same limit holds browser to upstream, fragmented or not."""
    harness = make_harness(max_message_size=1000)
    browser, upstream = joined(harness)
    browser.sendMessage(b"y" * 1500, fragmentSize=500)
    harness.flush()
    assert browser.closed[1] == 1009
    assert upstream.closed[1] == 1009


@pytest.mark.parametrize("is_binary", [True, False])
def test_a_message_at_the_limit_reaches_a_compressing_browser(make_harness, is_binary):
    """Deflate makes incompressible data a few bytes longer: the limit is on what the relay
    receives, so a message at the limit still goes out on a compressed leg."""
    harness = make_harness(max_message_size=1000, compression="browser")
    browser = harness.browser(deflate=True)
    upstream = harness.upstream()
    assert browser._perMessageCompress is not None
    payload = os.urandom(1000) if is_binary else "é".encode() * 500
    for message in (payload, b""):
        upstream.sendMessage(message, isBinary=is_binary)
    harness.flush()
    assert browser.messages == [(payload, is_binary), (b"", is_binary)]
    assert browser.closed is None and upstream.closed is None


def test_invalid_utf8_from_upstream_closes_both_with_1007(harness):
    """A text message that is not UTF-8 fails with 1007 on both legs."""
    browser, upstream = joined(harness)
    upstream.sendMessage(b"\xff\xfe", isBinary=False)
    harness.flush()
    assert upstream.closed[1] == 1007
    assert browser.closed[1] == 1007


# Pings and pongs pass through.

def test_upstream_ping_reaches_browser_and_pong_comes_back(harness):
    """Binance's ping payload reaches the browser; the browser's pong reaches Binance."""
    browser, upstream = joined(harness)
    upstream.sendPing(b"are you there")
    harness.flush()
    assert browser.pings == [b"are you there"]
    assert upstream.pongs == [b"are you there"]


def test_browser_ping_reaches_upstream_and_pong_comes_back(harness):
    """The browser's ping reaches Binance; Binance's pong comes back."""
    browser, upstream = joined(harness)
    browser.sendPing(b"hello?")
    harness.flush()
    assert upstream.pings == [b"hello?"]
    assert browser.pongs == [b"hello?"]


@pytest.mark.parametrize("compression", ["none", "browser"])
def test_keepalive_pings_stay_on_their_leg(make_harness, compression):
    """The relay's own pings and their pongs are never passed through, on the fast path and on
    Autobahn's (a compressed leg)."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0, compression=compression)
    browser = harness.browser(deflate=compression != "none")
    upstream = harness.upstream()
    assert (browser._perMessageCompress is not None) == (compression != "none")
    harness.advance(10.5)
    assert len(browser.pings) == 1 and len(upstream.pings) == 1
    assert browser.pongs == [] and upstream.pongs == []
    harness.advance(10.5)
    assert browser.closed is None and upstream.closed is None


def test_a_message_stands_in_for_the_pong_on_a_compressed_leg(make_harness):
    """On a leg with permessage-deflate (Autobahn's parser, not the fast path), a message
    received while the relay waits for its pong counts as the answer; the late pong still
    stops at the relay."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0, compression="browser")
    browser = harness.browser(deflate=True)
    upstream = harness.upstream()
    browser.onPing = browser.pings.append  # no pong, for now
    harness.advance(10.5)
    [own_ping] = browser.pings
    browser.sendMessage(b"still here")
    harness.flush()
    harness.advance(6.0)  # past the ping's timeout
    assert browser.closed is None and upstream.closed is None
    browser.sendPong(own_ping)
    harness.flush()
    assert upstream.messages == [(b"still here", False)] and upstream.pongs == []
    assert len(browser.pings) == 1


def test_pongs_pass_through_quietly_while_a_keepalive_is_pending(make_harness, log_events):
    """Pongs that do not answer the relay's own ping reach the other side, and log nothing:
    a peer must not be able to fill the log (Autobahn warns about each such pong)."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0)
    browser = harness.browser()
    browser.onPing = browser.pings.append  # leave the relay's ping unanswered for now
    upstream = harness.upstream()
    harness.advance(10.5)
    assert len(browser.pings) == 1
    del log_events[:]
    for n in range(50):
        browser.sendPong(b"pong %d" % n)
    harness.flush()
    assert upstream.pongs == [b"pong %d" % n for n in range(50)]
    assert [event for event in log_events if event["log_level"] != LogLevel.debug] == []
    browser.sendPong(browser.pings[0])  # the answer, late but in time
    harness.flush()
    harness.advance(6.0)
    assert browser.closed is None and upstream.closed is None
    assert len(upstream.pongs) == 50


def test_dead_browser_is_detected_by_keepalive(make_harness):
    """A browser that stops answering pings is dropped; Binance hears 1001."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0)
    browser = harness.browser()
    browser.onPing = browser.pings.append
    upstream = harness.upstream()
    harness.advance(10.5)
    harness.advance(6.0)
    assert upstream.closed[1] == 1001


def test_paused_leg_is_not_declared_dead(make_harness):
    """While the relay itself stops reading a leg, its unanswered ping is not fatal; the pong,
    read once reading resumes, still answers it, and does not reach the other side."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0)
    browser, upstream = joined(harness)
    leg = harness.factory.live.copy().pop()
    valve = ReadValve(leg)
    valve.pauseProducing()
    browser.onPing = browser.pings.append
    harness.advance(10.5)
    harness.advance(6.0)
    harness.advance(6.0)
    assert browser.closed is None and upstream.closed is None
    assert len(browser.pings) == 1  # the same ping is still the one awaited
    valve.resumeProducing()
    browser.sendPong(browser.pings[0])
    harness.flush()
    assert upstream.pongs == []
    harness.advance(10.5)  # the next ping comes an interval after the pong
    assert browser.closed is None and upstream.closed is None and len(browser.pings) == 2


def test_paused_leg_answered_by_a_message_is_not_pinged_anew_before_its_pong(make_harness):
    """A message stood in for the pong, then the relay paused the leg with the pong still unread:
    no new ping replaces the one whose pong is on its way, so that pong, once read, stops at the
    relay too."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0)
    browser, upstream = joined(harness)
    leg = harness.factory.live.copy().pop()
    browser.onPing = browser.pings.append
    harness.advance(10.5)
    browser.sendMessage(b"instead of the pong")
    harness.flush()
    valve = ReadValve(leg)
    valve.pauseProducing()
    harness.advance(10.5)  # the next ping would be due
    assert len(browser.pings) == 1 and browser.closed is None
    valve.resumeProducing()
    browser.sendPong(browser.pings[0])
    harness.flush()
    assert upstream.messages == [(b"instead of the pong", False)] and upstream.pongs == []


def test_paused_leg_whose_pong_never_comes_is_dropped_a_timeout_after_it_resumes(make_harness):
    """Pausing does not make a dead browser immortal: once reading resumes, the ping still awaited
    times out as any other, and Binance hears 1001."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0)
    browser, upstream = joined(harness)
    valve = ReadValve(harness.factory.live.copy().pop())
    valve.pauseProducing()
    browser.onPing = browser.pings.append  # never answers
    harness.advance(10.5)
    harness.advance(6.0)
    assert upstream.closed is None
    valve.resumeProducing()
    harness.advance(5.5)
    assert upstream.closed[1] == 1001


@pytest.mark.parametrize("ping_interval, ping_timeout", [(1.0, 3.0), (10.0, 4.0)])
def test_no_keepalive_while_a_close_waits_for_its_answer(make_harness, ping_interval, ping_timeout):
    """Once a browser has sent its close, the relay pings it no more and waits for no pong
    (none would be read): its close is answered with its own code when close_timeout passes
    without the upstream's answer, not cut short by the timeout of a ping sent before it."""
    harness = make_harness(ping_interval=ping_interval, ping_timeout=ping_timeout, close_timeout=5.0)
    browser, upstream = joined(harness)
    browser.onPing = browser.pings.append  # the relay's ping goes unanswered
    upstream.onCloseFrame = lambda code, reason: None  # a slow upstream: never answers
    harness.advance(ping_interval + 0.5)
    assert len(browser.pings) == 1
    browser.sendClose(4000, "bye")
    harness.flush()
    harness.advance(ping_timeout)  # past the ping's timeout, and when the next ping was due
    assert browser.closed is None
    assert len(browser.pings) == 1
    harness.advance(5.0 - ping_timeout + 0.1)  # past close_timeout
    assert browser.closed == (True, 4000, "bye")


def test_no_keepalive_after_the_relay_sent_its_close(make_harness):
    """Once the relay has closed a leg, it pings it no more, and starts no ping timeout."""
    harness = make_harness(ping_interval=1.0, ping_timeout=5.0, close_timeout=30.0)
    browser, upstream = joined(harness)
    browser.onCloseFrame = lambda code, reason: None  # never answers the relay's close
    leg = next(iter(harness.factory.live))
    leg.relay.close_both("test", 1001, b"bye")
    harness.flush()
    before = len(browser.raw)
    harness.advance(1.5)
    assert browser.raw[before:] == b""
    assert not leg.awaiting_pong and not harness.factory.keepalive.due(leg)


def test_without_a_ping_timeout_the_relay_waits_for_the_pong(make_harness):
    """`--ping-timeout 0`: an unanswered keepalive never ends the pair, and no other ping is
    sent meanwhile; once answered, the next ping comes an interval later."""
    harness = make_harness(ping_interval=10.0, ping_timeout=0.0)
    browser, upstream = joined(harness)
    browser.onPing = browser.pings.append
    harness.advance(10.5)
    for _ in range(10):
        harness.advance(10.0)
    assert browser.closed is None and upstream.closed is None
    assert len(browser.pings) == 1
    browser.sendPong(browser.pings[0])
    harness.flush()
    harness.advance(9.5)
    assert len(browser.pings) == 1 and upstream.pongs == []
    harness.advance(1.0)
    assert len(browser.pings) == 2


def test_a_pending_keepalive_does_not_cut_the_relays_close_short(make_harness):
    """A ping unanswered when the relay starts closing a leg is not waited for any more: the
    close handshake's own timeout applies (close_timeout), not the ping's."""
    harness = make_harness(ping_interval=10.0, ping_timeout=2.0, close_timeout=5.0)
    browser, upstream = joined(harness)
    browser.onPing = browser.pings.append
    browser.onCloseFrame = lambda code, reason: None  # never answers the relay's close
    harness.advance(10.5)
    assert len(browser.pings) == 1
    next(iter(harness.factory.live)).relay.close_both("test", 1001, b"bye")
    harness.flush()
    harness.advance(3.0)  # past the ping's timeout
    assert browser.closed is None
    harness.advance(2.5)  # past close_timeout
    assert browser.closed is not None


def test_a_finished_pair_leaves_nothing_in_the_keepalive_wheel(make_harness):
    """Once a pair is gone, the wheel holds neither of its legs, pinged or awaiting a pong."""
    harness = make_harness(ping_interval=10.0, ping_timeout=5.0)
    wheel = harness.factory.keepalive
    first, _ = joined(harness)
    first.onPing = first.pings.append  # its pong awaited when it closes
    second, _ = joined(harness)
    assert len(wheel) == 4
    harness.advance(10.5)
    first.sendClose(1000)
    second.sendClose(1000)
    harness.flush()
    harness.advance(1.0)
    assert first.closed is not None and second.closed is not None
    assert len(wheel) == 0 and wheel._ticks == {}


# Closing, end to end.

@pytest.mark.parametrize(
    "code, reason",
    [(1000, "bye"), (1001, "going"), (1003, ""), (1008, "policy"), (1011, "oops"),
     (1012, "restart"), (1013, "later"), (1014, "gateway"), (3000, "app"), (4999, "last")],
)
def test_upstream_close_code_and_reason_reach_browser(harness, code, reason):
    """Binance's close code and reason reach the browser, and its answer goes back."""
    browser, upstream = joined(harness)
    upstream.sendCloseFrame(code, reason.encode())
    harness.flush()
    assert browser.closed == (True, code, reason or None)
    assert upstream.closed == (True, code, reason or None)


@pytest.mark.parametrize("after_close", [b"\x81\x05late1\x82\x01\x00", b"\xff\xff\xff"])
def test_frames_after_a_close_are_neither_relayed_nor_counted_nor_parsed(harness, after_close):
    """Nothing may follow a close (RFC 6455, 5.5.1): what a peer sends after its close frame
    does not reach the browser, is not counted as relayed, and, were it garbage, cannot turn
    the peer's clean close into a protocol error."""
    browser, upstream = joined(harness)
    upstream.sendData(b"\x81\x01a" + b"\x88\x02\x03\xe8" + after_close)
    harness.flush()
    assert browser.messages == [(b"a", False)]
    assert browser.closed == (True, 1000, None)
    assert upstream.closed[:2] == (True, 1000)
    metrics = harness.factory.metrics
    assert (metrics.traffic("messages")["upstream"], metrics.traffic("bytes")["upstream"]) == (1, 1)


def test_a_closed_direction_counts_nothing():
    """Counters are of relayed messages: once a direction is closed, nothing more is counted."""
    direction = Direction(sink=None)
    direction.begin(False)
    direction.whole(b"abc")
    direction.begin(True)
    direction.data(b"defg")
    direction.end()
    assert (direction.messages, direction.bytes) == (0, 0)


def test_upstream_close_without_code_reaches_browser_without_code(harness):
    """An empty close stays empty (the browser reads 1005)."""
    browser, upstream = joined(harness)
    upstream.sendCloseFrame()
    harness.flush()
    assert browser.closed == (True, None, None)


def test_upstream_drop_gives_browser_1014(harness):
    """Binance vanishing without a close is a 1014 for the browser."""
    browser, upstream = joined(harness)
    upstream.transport.abortConnection()
    harness.flush()
    assert browser.closed == (True, 1014, "upstream connection lost")


@pytest.mark.parametrize("code, reason", [(1000, ""), (1001, "tab closed"), (4000, "logout")])
def test_browser_close_code_and_reason_reach_upstream(harness, code, reason):
    """The browser's close code and reason reach Binance."""
    browser, upstream = joined(harness)
    browser.sendCloseFrame(code, reason.encode())
    harness.flush()
    assert upstream.closed == (True, code, reason or None)
    assert browser.closed == (True, code, reason or None)


@pytest.mark.parametrize("side", ["browser", "upstream"])
def test_the_answer_to_a_close_is_the_other_sides_answer(harness, log_events, side):
    """A close is answered with what the other side answered (here 1000, not an echo), as a
    direct connection would show it; each leg's own close is what the log records."""
    browser, upstream = joined(harness)
    closer, answerer = (browser, upstream) if side == "browser" else (upstream, browser)
    answerer.echoCloseCodeReason = False  # Autobahn's default: answer any close with 1000
    closer.sendCloseFrame(4000, b"logout")
    harness.flush()
    assert answerer.closed == (True, 4000, "logout")
    assert closer.closed == (True, 1000, None)
    report = next(e for e in log_events if e.get("log_namespace") == "chatrelay.connection")
    assert report[f"{side}_close"] == "4000/peer"


@pytest.mark.parametrize("answer", [struct.pack("!H", 999), struct.pack("!H", 1000) + b"\xff"])
def test_an_invalid_answer_to_a_close_is_not_passed_on(harness, answer):
    """Binance answers the browser's close with a code no one may send, or a reason that is not
    UTF-8: that leg is failed, and the browser gets its own close echoed."""
    browser, upstream = joined(harness)
    upstream.onCloseFrame = lambda code, reason: upstream.sendFrame(opcode=8, payload=answer)
    browser.sendCloseFrame(4000, b"logout")
    harness.flush()
    assert browser.closed == (True, 4000, "logout")


@pytest.mark.parametrize("first", ["browser", "upstream"])
def test_when_both_sides_close_at_once_each_gets_the_others_code(harness, first):
    """Closes that cross in flight: each side gets the other's code and reason (RFC 6455
    7.1.5: the code of the first close received), whichever reaches the relay first."""
    browser, upstream = joined(harness)
    browser.sendCloseFrame(4000, b"from browser")
    upstream.sendCloseFrame(4001, b"from upstream")
    browser_pump, upstream_pump = harness.pumps
    (browser_pump if first == "browser" else upstream_pump).flush()
    harness.flush()
    assert browser.closed == (True, 4001, "from upstream")
    assert upstream.closed == (True, 4000, "from browser")


def test_a_long_non_ascii_reason_is_cut_between_characters(harness):
    """A reason cut to the 123 bytes a close frame holds stays valid UTF-8 (a peer would fail
    a close whose reason ends inside a character with 1007)."""
    browser, upstream = joined(harness)
    leg = next(iter(harness.factory.live))
    leg._fail_connection(1002, "é" * 100)  # as Autobahn fails a leg, here with a long reason
    harness.flush()
    assert upstream.closed == (True, 1001, "é" * 61)


def test_browser_drop_gives_upstream_1001(harness):
    """A browser vanishing without a close is a 1001 for Binance."""
    browser, upstream = joined(harness)
    browser.transport.abortConnection()
    harness.flush()
    assert upstream.closed == (True, 1001, "browser went away")


def test_close_is_answered_only_after_the_other_side_answers(harness):
    """The browser's close waits for Binance's answer, up to --close-timeout."""
    browser, upstream = joined(harness)
    upstream.onCloseFrame = lambda code, reason: None  # Binance never answers
    browser.sendCloseFrame(4000, b"bye")
    harness.flush()
    assert browser.closed is None
    harness.advance(5.5)
    assert browser.closed == (True, 4000, "bye")


def test_a_closed_connection_that_never_drains_is_aborted(make_harness):
    """After the closing handshake the relay closes TCP gracefully, letting queued bytes out;
    a peer that never reads them gets close_timeout, then the connection is aborted."""
    harness = make_harness(close_timeout=5.0)
    browser, upstream = joined(harness)
    browser.serverConnectionDropTimeout = 60  # the browser waits for the relay to close TCP
    leg = harness.factory.live.copy().pop()
    aborted = []
    leg.transport.loseConnection = lambda: None  # as if the browser never read what is queued
    leg.transport.abortConnection = lambda: aborted.append(True)
    browser.sendCloseFrame(1000)
    harness.flush()
    assert upstream.closed[1] == 1000 and aborted == []
    harness.advance(4.9)
    assert aborted == []
    harness.advance(0.2)
    assert aborted == [True]


@pytest.mark.parametrize("browser_answers", [True, False])
def test_an_upstream_that_never_drops_tcp_after_its_close_is_cut_off(harness, log_events, browser_answers):
    """Binance closes, the relay answers it (once the browser answered, or after close_timeout)
    and Binance then keeps TCP open: the relay drops it after serverConnectionDropTimeout, and
    the pair is over and reported."""
    browser, upstream = joined(harness)
    upstream.dropConnection = lambda abort=False: None  # never closes TCP
    if not browser_answers:
        browser.onCloseFrame = lambda code, reason: None
    upstream.sendCloseFrame(4001, b"bye")
    harness.flush()
    harness.advance(0 if browser_answers else 5.5)
    assert upstream.closed is None  # answered, but TCP still open
    harness.advance(1.5)  # Autobahn's default serverConnectionDropTimeout: 1 s
    assert upstream.closed is not None
    reports = [e for e in log_events if e.get("log_namespace") == "chatrelay.connection"]
    assert [(e["outcome"], e["upstream_close"]) for e in reports] == [("upstream_closed", "4001/peer")]
    assert harness.factory.metrics.pair_count() == 0 and harness.clock.getDelayedCalls() == []


def test_shutdown_closes_both_legs_with_1001(harness):
    """Stopping the relay says 1001 to both sides, and finishes when they have answered."""
    browser, upstream = joined(harness)
    idle = harness.factory.shut_down()
    harness.flush()
    assert browser.closed[1] == 1001 and upstream.closed[1] == 1001
    assert idle.called


def hold_close_answers(peer):
    """Make an Autobahn peer keep the closes it receives unanswered; returns them."""
    held = []
    peer.onCloseFrame = lambda code, reason: held.append((code, reason))
    return held


def test_shutdown_waits_for_upstream_legs_still_closing(harness, log_events):
    """The browser answers the 1001 first, Binance later: shutting down waits for Binance's
    answer (not cut off, as 1006, when the browser is gone), and the pair is reported."""
    browser, upstream = joined(harness)
    held = hold_close_answers(upstream)
    idle = harness.factory.shut_down()
    harness.flush()
    assert browser.closed[1] == 1001 and held == [(1001, b"relay shutting down")]
    assert not idle.called
    del upstream.onCloseFrame
    upstream.onCloseFrame(*held[0])
    harness.flush()
    assert idle.called and upstream.closed == (True, 1001, "relay shutting down")
    report = next(e for e in log_events if e.get("log_namespace") == "chatrelay.connection")
    assert (report["outcome"], report["upstream_close"]) == ("shutdown", "1001/relay")


def test_shutdown_aborts_upstream_legs_left_after_the_grace_period(harness):
    """An upstream that never answers the 1001 after its browser has gone is aborted once the
    service's grace period is over, and the service stops."""
    from chatrelay.service import RelayService

    browser, upstream = joined(harness)
    hold_close_answers(upstream)
    service = RelayService(harness.clock, harness.factory, grace=2.0)
    service.startService()
    stopped = []
    service.stopService().addBoth(stopped.append)
    harness.flush()
    assert browser.closed[1] == 1001 and upstream.closed is None and stopped == []
    harness.advance(2.0)
    harness.advance(0)
    assert upstream.closed[:2] == (False, 1006) and stopped == [None]
    assert harness.factory.upstream_live == set()


def test_shutdown_during_upstream_attempt_says_1001(harness):
    """A browser still waiting for its upstream hears 1001 too."""
    browser = harness.browser()
    harness.factory.shut_down()
    harness.flush()
    assert browser.closed[1] == 1001


def test_a_leg_lost_while_closing_is_not_kept_for_the_close_timeout(harness):
    """A peer that drops TCP instead of answering the relay's close: nothing waits for it."""
    client = harness.raw()
    client.transport.write(upgrade_request(relay_query(key="wrong")))
    harness.flush()
    assert close_frame_after_101(client.received)[0] == 4401
    client.transport.loseConnection()
    harness.flush()
    assert harness.factory.live == set() and harness.clock.getDelayedCalls() == []


def test_bytes_after_a_close_are_not_kept(harness):
    """Once a connection is closed nothing reads its bytes, so none are kept (a TLS connection
    is read on until the peer's close_notify, and a peer could send without end meanwhile)."""
    client = harness.raw()
    leg = next(iter(harness.factory.live))
    client.transport.write(b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\n\r\n")
    harness.flush()
    assert bytes(client.received).startswith(b"HTTP/1.1 ")
    kept = len(leg.data)
    for _ in range(100):
        leg.dataReceived(b"x" * 1000)
    assert len(leg.data) == kept


# Flow control and accounting.

def test_each_leg_pauses_the_other(harness):
    """Each leg's transport has a valve on the other leg registered as its producer."""
    joined(harness)
    leg = harness.factory.live.copy().pop()
    upstream_leg = leg.relay.upstream
    assert isinstance(leg.transport.producer, ReadValve) and leg.transport.producer.leg is upstream_leg
    assert isinstance(upstream_leg.transport.producer, ReadValve)
    assert upstream_leg.transport.producer.leg is leg


def test_one_report_per_connection_without_secrets(harness, log_events):
    """One summary event with outcome, codes and counts; never the key, token or path."""
    browser, upstream = joined(harness)
    browser.sendMessage(b"12345")
    harness.flush()
    upstream.sendCloseFrame(4001, b"done")
    harness.flush()
    reports = [e for e in log_events if e.get("log_namespace") == "chatrelay.connection"]
    assert len(reports) == 1
    event = reports[0]
    assert event["outcome"] == "upstream_closed"
    assert event["up_messages"] == 1 and event["up_bytes"] == 5
    assert str(event["browser_close"]) == "4001/relay"
    text = " ".join(formatEvent(e) or "" for e in log_events)
    for secret in (TOKEN, "TOKEN123", "c2c_key", UPSTREAM_URL):
        assert secret not in text


class RejectingUpstream(UpstreamServer):
    """An upstream that refuses every upgrade with 401."""

    def onConnect(self, request):
        """IWebSocketServerChannel API."""
        raise ConnectionDeny(401, "Unauthorized")


def test_both_legs_turn_nagle_off(harness):
    """TCP_NODELAY on both legs, never turned back on: Nagle would hold each message's final
    frame for the peer's delayed ACK (Autobahn's own attempt fails with its usual factory)."""
    from twisted.internet.testing import StringTransport

    calls = []

    class Transport(StringTransport):
        def setTcpNoDelay(self, enabled):
            calls.append(enabled)

    browser_leg = harness.factory.buildProtocol(None)
    browser_leg.makeConnection(Transport())
    assert calls and all(calls)
    browser_calls = len(calls)
    harness.browser()
    factory, _ = harness.held[0]
    upstream_leg = factory.buildProtocol(None)
    upstream_leg.makeConnection(Transport())
    assert len(calls) > browser_calls and all(calls)


def test_connections_leave_nothing_behind(make_harness):
    """Serving connections, whichever way they end, refusals included, leaves nothing behind
    (a few hundred of each kind; a leak of one object per connection would show)."""
    harness = make_harness(ping_interval=10.0, ping_timeout=30.0, limits=Limits(max_per_client=1, idle_timeout=0))
    harness.browser(peer="198.51.100.1")  # holds that address's one connection throughout
    harness.upstream()
    kept = len(harness.pumps)

    def serve(count):
        for n in range(count):
            for ending in ("browser_close", "upstream_close", "browser_drop", "bad_key", "over_limit"):
                browser = harness.browser(
                    relay_query(key="wrong") if ending == "bad_key" else None,
                    peer="198.51.100.1" if ending == "over_limit" else f"192.0.2.{n % 200 + 1}",
                )
                if ending in ("bad_key", "over_limit"):
                    assert browser.closed[1] == (4401 if ending == "bad_key" else 1013)
                else:
                    upstream = harness.upstream()
                    browser.sendMessage(b'{"type":"ping"}')
                    harness.flush()
                    if ending == "browser_close":
                        browser.sendCloseFrame(1000)
                    elif ending == "upstream_close":
                        upstream.sendCloseFrame(4001, b"bye")
                    else:
                        browser.transport.loseConnection()
                harness.advance(6)
            del harness.pumps[kept:]

    def census():
        gc.collect()
        return collections.Counter(type(thing).__name__ for thing in gc.get_objects())

    serve(50)
    before = census()
    serve(200)
    after = census()
    assert {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind] > 20} == {}
    assert len(harness.factory.live) == 1 and harness.factory.limits.total == 1


def drop_connections(harness):
    """Let go of the harness's finished connections, and of their protocols, as Twisted's TCP
    transport does when its connection is lost (iosim's transports keep theirs)."""
    for pump in harness.pumps:
        pump.clientIO.protocol = pump.serverIO.protocol = None
    harness.pumps.clear()


@pytest.mark.parametrize("ending", ["browser_close", "upstream_close", "upstream_drop", "bad_key"])
def test_a_finished_pair_is_freed_without_the_cyclic_garbage_collector(harness, ending):
    """Once both legs are gone, nothing of the pair refers to itself: legs, relay and report are
    freed by reference counting at once, not by a later pass of the cyclic collector."""
    gc.collect()
    gc.disable()
    try:
        browser = harness.browser(relay_query(key="wrong") if ending == "bad_key" else None)
        browser_leg = harness.pumps[-1].server
        kept = [browser_leg]  # a refused one is gone already, and with it its report
        if ending != "bad_key":
            upstream = harness.upstream()
            kept += [browser_leg.report, browser_leg.relay, browser_leg.relay.upstream]
            browser.sendMessage(b'{"type":"ping"}')
            harness.flush()
            if ending == "browser_close":
                browser.sendCloseFrame(4000, b"bye")
            elif ending == "upstream_close":
                upstream.sendCloseFrame(4001, b"bye")
            else:
                upstream.transport.loseConnection()
        harness.advance(10)
        assert browser.closed is not None and not harness.factory.live and not harness.factory.upstream_live
        alive = [weakref.ref(thing) for thing in kept]
        names = [type(thing).__name__ for thing in kept]
        del kept, browser_leg
        drop_connections(harness)
        assert [name for name, ref in zip(names, alive) if ref() is not None] == []
    finally:
        gc.enable()


def ignoring_closes(peer):
    """Make a harness peer neither answer a close nor drop TCP after one (a stalled Binance);
    the codes of the closes it ignored are in its `ignored_closes`."""
    peer.ignored_closes = []
    peer.onCloseFrame = lambda code, reason: peer.ignored_closes.append(code)
    return peer


@pytest.mark.parametrize("event", ["binance_drops", "relay_shuts_down"])
def test_a_close_waiting_for_its_answer_is_answered_at_once_when_the_pair_ends(harness, event):
    """The browser's close waits for Binance's answer. If Binance drops TCP instead, or SIGTERM
    comes, the browser's close is answered at once, not after --close-timeout (which is longer
    than the shutdown's grace period)."""
    browser, upstream = joined(harness)
    ignoring_closes(upstream)
    browser.sendCloseFrame(4000, b"bye")
    harness.flush()
    assert browser.closed is None and upstream.ignored_closes == [4000]
    if event == "binance_drops":
        upstream.transport.loseConnection()
    else:
        harness.factory.shut_down()
    harness.flush()
    assert browser.closed == (True, 4000, "bye")


def test_shutdown_drops_connections_still_sending_their_request(harness):
    """A connection that has not sent its whole request head is dropped at shutdown, so that
    shutdown does not wait for --handshake-timeout."""
    client = harness.raw()
    client.transport.write(b"GET /chat-relay/ HTTP/1.1\r\n")
    harness.flush()
    idle = harness.factory.shut_down()
    harness.flush()
    assert client.transport.disconnected and idle.called


def test_the_subprotocol_binance_chose_reaches_the_browser(harness, monkeypatch):
    """The browser's offered subprotocols go upstream; the one Binance accepts comes back in the
    101 (a browser fails a handshake that offered some and got none back)."""
    from tests.memory import UpstreamServer

    monkeypatch.setattr(UpstreamServer, "onConnect", lambda self, request: request.protocols[-1])
    browser = harness.browser(protocols=["v1.chat", "v2.chat"])
    upstream = harness.upstream()
    assert upstream.websocket_protocol_in_use == "v2.chat"
    assert browser.websocket_protocol_in_use == "v2.chat"


@pytest.mark.parametrize("value", ["chat v2", "chat, v2;x", "ch\xe4t", "chat, {v2}"])
def test_a_subprotocol_that_is_not_a_token_is_refused_before_admission(make_harness, value):
    """A Sec-WebSocket-Protocol value no browser offers (not a token, RFC 6455 4.1) is refused
    with HTTP 400 and a fixed reason before admission (a full relay would say 1013), and goes
    nowhere near an upstream request."""
    harness = make_harness(limits=Limits(max_connections=1, max_per_client=10))
    harness.browser(peer="192.0.2.1")  # takes the one slot
    client = harness.raw(peer="192.0.2.2")
    client.transport.write(upgrade_request(extra_headers=f"Sec-WebSocket-Protocol: {value}\r\n"))
    harness.flush()
    answer = bytes(client.received)
    assert answer.startswith(b"HTTP/1.1 400 Sec-WebSocket-Protocol is not a list of tokens\r\n"), answer
    assert len(harness.held) == 1 and harness.factory.limits.total == 1


def test_a_refusal_echoes_the_first_offered_subprotocol_not_an_empty_element(harness):
    """A browser that offered ", chat" reads its refusal's code after a 101 naming chat (an empty
    Sec-WebSocket-Protocol in the 101 would fail its handshake instead)."""
    client = harness.raw()
    client.transport.write(upgrade_request(relay_query(key="wrong"), "Sec-WebSocket-Protocol: , chat\r\n"))
    harness.flush()
    assert b"\r\nSec-WebSocket-Protocol: chat\r\n" in bytes(client.received)
    assert close_frame_after_101(client.received)[0] == 4401


def test_empty_subprotocol_list_elements_are_ignored(harness):
    """HTTP list syntax (RFC 9110, 5.6.1): "chat, , v2" offers chat and v2, and only those go
    upstream. (Two empty elements are refused by Autobahn, as a duplicate subprotocol.)"""
    client = harness.raw()
    client.transport.write(upgrade_request(extra_headers="Sec-WebSocket-Protocol: chat, , v2\r\n"))
    harness.flush()
    upstream = harness.upstream()
    assert upstream.websocket_protocols == ["chat", "v2"]
    assert bytes(client.received).startswith(b"HTTP/1.1 101 ")


def test_an_open_pair_keeps_nothing_only_the_handshake_needed(harness):
    """Thousands of idle legs: once open, neither leg keeps the request, its headers or the
    browser's peer address object."""
    from chatrelay.legs import _HANDSHAKE_ONLY

    joined(harness)
    browser_leg = next(iter(harness.factory.live))
    upstream_leg = browser_leg.relay.upstream
    for leg in (browser_leg, upstream_leg):
        assert [name for name in _HANDSHAKE_ONLY if name in vars(leg)] == []
    assert "_tcp_peer" not in vars(browser_leg) and "http_headers" not in vars(browser_leg)
    assert browser_leg.client == "192.0.2.7" and browser_leg.report.tcp_peer == "192.0.2.7:40000"
