"""The behaviour contract, as a browser and Binance see it: the installed `twistd chatrelay` on
loopback, between browser-like clients and the fake Binance chat server."""

import json
import uuid

import pytest
import pytest_twisted

from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from chatrelay.fakebinance import FakeBinance
from tests.loopback import (
    TOKEN,
    WAIT,
    open_browser,
    refused_port,
    relay_url,
    start_relay,
    unanswered_port,
    wait_for_log,
    wait_until_stalled,
)


@pytest.fixture(scope="module")
def fake():
    from twisted.internet import reactor

    binance = FakeBinance(reactor)
    pytest_twisted.blockon(binance.listen())
    yield binance
    pytest_twisted.blockon(binance.stop())


@pytest.fixture(scope="module")
def relay(fake):
    from twisted.internet import reactor

    process = pytest_twisted.blockon(
        start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/",
                    "--allow-target", "ws://127.0.0.1:*/elsewhere/", "--connect-timeout", "4")
    )
    yield process
    process.kill()


def browse(reactor, relay, target, **kwargs):
    return open_browser(reactor, relay_url(relay.port, target, **kwargs))


@defer.inlineCallbacks
def open_pair(reactor, relay, fake):
    """A browser joined through the relay to its own fake Binance connection."""
    factory = browse(reactor, relay, fake.chat_url())
    browser = yield factory.opened
    binance = yield fake.next_connection().addTimeout(WAIT, reactor)
    return factory, browser, binance


def chat_message(content):
    return {"type": "text", "uuid": str(uuid.uuid4()), "orderNo": "20476365073825144832",
            "content": content, "self": True, "clientType": "web", "sendStatus": 0}


# A full round trip, as the browser app does it.

@pytest_twisted.inlineCallbacks
def test_round_trip_through_the_relay(reactor, relay, fake):
    """Send a chat message, get Binance's echo with its id, then a pushed system message."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    sent = chat_message("Hi, paid")
    browser.sendMessage(json.dumps(sent).encode())
    echo, is_binary = yield browser.next_message()
    echo = json.loads(echo)
    assert not is_binary
    assert echo["uuid"] == sent["uuid"] and echo["content"] == "Hi, paid" and echo["id"].isdigit()
    binance.push_system("20476365073825144832", "buyer_payed")
    system, _ = yield browser.next_message()
    assert json.loads(json.loads(system)["content"])["type"] == "buyer_payed"
    browser.sendMessage(json.dumps({"type": "ping"}).encode())
    browser.sendMessage(b"\x00\xffbinary", isBinary=True)
    assert (yield binance.next_message()) == (json.dumps(sent).encode(), False)
    assert (yield binance.next_message()) == (b'{"type": "ping"}', False)
    assert (yield binance.next_message()) == (b"\x00\xffbinary", True)
    binance.send_binary(b"\x01\x02")
    assert (yield browser.next_message()) == (b"\x01\x02", True)
    browser.sendClose(1000)
    yield factory.closed


def test_the_relay_runs_on_its_own_reactor(relay):
    """`twistd --reactor=chatrelay`, as deployed, runs chatrelay.reactor.RelayReactor."""
    assert "reactor class: chatrelay.reactor.RelayReactor." in relay.text


@pytest_twisted.inlineCallbacks
def test_round_trip_on_twistds_default_reactor(reactor, fake):
    """Without --reactor and --logger the relay runs on twistd's default (epoll) reactor, logs
    through twistd's default observer, and relays as well."""
    process = yield start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/",
                                twistd_reactor=None, twistd_logger=None)
    try:
        assert "reactor class: twisted.internet.epollreactor.EPollReactor." in process.text
        factory, browser, binance = yield open_pair(reactor, process, fake)
        browser.sendMessage(b'{"type": "ping"}')
        assert (yield binance.next_message()) == (b'{"type": "ping"}', False)
        binance.send_binary(b"\x01\x02")
        assert (yield browser.next_message()) == (b"\x01\x02", True)
        browser.sendClose(1000)
        yield factory.closed
        yield wait_for_log(reactor, process, "127.0.0.1 [127.0.0.1:")
    finally:
        process.kill()


@pytest_twisted.inlineCallbacks
def test_a_unix_socket_listener_relays_and_logs_its_peer_as_unix(reactor, fake, tmp_path):
    """--listen unix:PATH (nginx in front, on the same host): a browser relays through it, and
    the log names its peer "unix" (it has no IP address)."""
    from twisted.internet.endpoints import UNIXClientEndpoint

    path = str(tmp_path / "relay.sock")
    process = yield start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/",
                                listen_first=("--listen", f"unix:{path}"))
    try:
        factory = open_browser(reactor, relay_url(process.port, fake.chat_url()),
                               endpoint=UNIXClientEndpoint(reactor, path))
        browser = yield factory.opened
        binance = yield fake.next_connection().addTimeout(WAIT, reactor)
        browser.sendMessage(b'{"type": "ping"}')
        assert (yield binance.next_message()) == (b'{"type": "ping"}', False)
        browser.sendClose(1000)
        yield factory.closed
        yield wait_for_log(reactor, process, "unix [unix] browser_closed")
    finally:
        process.kill()


@pytest_twisted.inlineCallbacks
def test_each_tab_gets_its_own_upstream_with_the_exact_target(reactor, relay, fake):
    """Two browsers, two Binance connections, each with the URL its browser gave."""
    url_a, url_b = fake.chat_url(), fake.chat_url()
    a = yield browse(reactor, relay, url_a).opened
    binance_a = yield fake.next_connection()
    b = yield browse(reactor, relay, url_b).opened
    binance_b = yield fake.next_connection()
    for url, binance in ((url_a, binance_a), (url_b, binance_b)):
        query = url.split("?", 1)[1]
        assert binance.path == "/chat/" + fake.listen_key
        assert binance.params == dict(pair.split("=") for pair in query.split("&"))
    a.sendMessage(b"A", isBinary=True)
    b.sendMessage(b"B", isBinary=True)
    assert (yield binance_a.next_message()) == (b"A", True)
    assert (yield binance_b.next_message()) == (b"B", True)
    a.sendClose(1000)
    b.sendClose(1000)


@pytest_twisted.inlineCallbacks
def test_browser_opens_only_after_binance_opens(reactor, relay, fake):
    """The page's open event comes after the Binance leg's handshake, even a slow one."""
    order = []
    fake.delay_next_handshake(0.5)
    fake.next_connection().addCallback(lambda _: order.append("binance"))
    factory = browse(reactor, relay, fake.chat_url())
    factory.opened.addCallback(lambda browser: order.append("browser") or browser)
    browser = yield factory.opened
    assert order == ["binance", "browser"]
    browser.sendClose(1000)


# Refusals: never contact Binance.

@pytest.mark.parametrize(
    "key, target, code",
    [
        (None, "GOOD", 4401),
        ("wrong-key", "GOOD", 4401),
        (TOKEN + "x", "GOOD", 4401),
        (TOKEN, None, 4400),
        (TOKEN, "not a url", 4400),
        (TOKEN, "wss://user@127.0.0.1/chat/x", 4400),
        (TOKEN, "ws://127.0.0.2:{port}/chat/x", 4403),
        (TOKEN, "ws://localhost:{port}/chat/x", 4403),
        (TOKEN, "ws://127.0.0.1:{port}/chatx", 4403),
        (TOKEN, "wss://127.0.0.1:{port}/chat/x", 4403),
    ],
)
@pytest_twisted.inlineCallbacks
def test_refusals(reactor, relay, fake, key, target, code):
    """Bad key 4401, bad target 4400, target not allowed 4403; Binance is never contacted."""
    seen = fake.handshakes_seen
    if target == "GOOD":
        target = fake.chat_url()
    elif target is not None:
        target = target.format(port=fake.port)
    factory = browse(reactor, relay, target, key=key)
    yield factory.opened
    was_clean, got, _ = yield factory.closed
    assert (was_clean, got) == (True, code)
    assert fake.handshakes_seen == seen
    assert isinstance(factory.tcp_end, error.ConnectionDone), "TCP reset after a clean close"


# Request heads still to come.

class SlowClient(protocol.Protocol):
    """A client that sends part of a request head and then nothing; `lost` fires when the
    relay closes the connection."""

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionMade(self):
        """Twisted API."""
        self.transport.write(b"GET /chat-relay/?key=x HTTP/1.1\r\nHost: relay\r\n")

    def connectionLost(self, reason):
        """Twisted API."""
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def test_request_heads_still_to_come_are_limited_per_address(reactor, fake):
    """Beyond --max-connections-per-ip connections from one address still sending their request
    head, the next is closed at once; those already counted keep their --handshake-timeout, and
    browsers from other addresses are not affected."""
    process = yield start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/",
                                "--max-connections-per-ip", "2", "--handshake-timeout", "60")
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", process.port)
    try:
        slow = []
        for _ in range(3):
            slow.append((yield connectProtocol(endpoint, SlowClient()).addTimeout(WAIT, reactor)))
        yield slow[2].lost.addTimeout(WAIT, reactor)
        assert not (slow[0].lost.called or slow[1].lost.called)
        other = TCP4ClientEndpoint(reactor, "127.0.0.1", process.port, bindAddress=("127.0.0.2", 0))
        factory = open_browser(reactor, relay_url(process.port, fake.chat_url()), endpoint=other)
        yield factory.opened
        yield fake.next_connection().addTimeout(WAIT, reactor)
        assert not (slow[0].lost.called or slow[1].lost.called)
    finally:
        process.kill()


# Upstream failures: 1014 with a reason that names the cause.

@pytest.mark.parametrize(
    "target_port, reason",
    [
        (refused_port, "upstream refused the connection"),  # nothing listening on the port
        (unanswered_port, "upstream connect timed out"),  # SYNs dropped: after --connect-timeout (4 s)
    ],
)
@pytest_twisted.inlineCallbacks
def test_upstream_tcp_failures_give_1014(reactor, relay, target_port, reason):
    """A target host that refuses or never answers the TCP handshake."""
    holders, port = target_port()
    try:
        factory = browse(reactor, relay, f"ws://127.0.0.1:{port}/elsewhere/x")
        yield factory.opened
        assert (yield factory.closed) == (True, 1014, reason)
    finally:
        for holder in holders:
            holder.close()


@pytest_twisted.inlineCallbacks
def test_upstream_rejecting_the_handshake_gives_1014(reactor, relay, fake):
    """Binance refusing the upgrade (a used token, say) is named with its HTTP status."""
    fake.refuse_next(1, status=401)
    factory = browse(reactor, relay, fake.chat_url())
    yield factory.opened
    assert (yield factory.closed) == (True, 1014, "upstream refused the WebSocket handshake (HTTP 401)")


@pytest_twisted.inlineCallbacks
def test_upstream_too_slow_gives_1014(reactor, relay, fake):
    """A Binance handshake slower than --connect-timeout (4 s here)."""
    fake.delay_next_handshake(8)
    factory = browse(reactor, relay, fake.chat_url())
    yield factory.opened
    assert (yield factory.closed) == (True, 1014, "upstream timed out")


# Data limits.

@pytest_twisted.inlineCallbacks
def test_message_over_the_limit_closes_with_1009(reactor, relay, fake):
    """A message over 1 MiB: Binance's leg gets 1009, and so does the browser."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    binance.send_binary(b"x" * ((1 << 20) + 1))
    was_clean, code, _ = yield factory.closed
    assert code == 1009
    assert (yield binance.closed)[1] == 1009


# Pings and pongs.

@pytest_twisted.inlineCallbacks
def test_binance_ping_reaches_browser_and_its_pong_returns(reactor, relay, fake):
    """The same ping payload; the browser's pong is what Binance gets."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    binance.ping(b"binance-ping-1")
    assert (yield browser.next_ping()) == b"binance-ping-1"
    assert (yield binance.next_pong()) == b"binance-ping-1"
    browser.sendClose(1000)


@pytest_twisted.inlineCallbacks
def test_browser_ping_reaches_binance_and_its_pong_returns(reactor, relay, fake):
    """The browser's ping reaches Binance; Binance's pong comes back."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    browser.sendPing(b"browser-ping-1")
    assert (yield binance.next_ping()) == b"browser-ping-1"
    assert (yield browser.next_pong()) == b"browser-ping-1"
    browser.sendClose(1000)


@pytest_twisted.inlineCallbacks
def test_the_relays_keepalives_are_answered_and_never_passed_on(reactor, fake):
    """With keepalives every second (and two to answer), the browser and Binance each get the
    relay's pings and answer them; the pair outlives several, neither side sees the other's
    answers, and messages still flow."""
    process = yield start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/",
                                "--ping-interval", "1", "--ping-timeout", "2")
    try:
        factory, browser, binance = yield open_pair(reactor, process, fake)
        for _ in range(5):
            yield browser.next_ping().addTimeout(WAIT, reactor)
            yield binance.next_ping().addTimeout(WAIT, reactor)
        browser.sendMessage(b'{"type": "ping"}')
        assert (yield binance.next_message()) == (b'{"type": "ping"}', False)
        assert not factory.closed.called
        assert binance.pongs_received == []
        pong = browser.next_pong()
        assert not pong.called  # no pong reached the browser
        pong.cancel()
        pong.addErrback(lambda failure: failure.trap(defer.CancelledError))
        browser.sendClose(1000)
        assert (yield factory.closed) == (True, 1000, None)
    finally:
        process.kill()


@pytest.mark.parametrize("silent", ["browser", "binance"])
@pytest_twisted.inlineCallbacks
def test_a_peer_that_stops_answering_keepalives_is_dropped(reactor, fake, silent):
    """A browser tab frozen, or a Binance socket gone quiet, stops answering the relay's pings:
    its leg is dropped once a ping goes unanswered for --ping-timeout, and the other side hears
    it: Binance 1001 for a silent browser, the browser 1014 for a silent Binance. (A timeout of
    2 s, not 1: the peer that answers must not be dropped by a slow machine first.)"""
    process = yield start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/",
                                "--ping-interval", "1", "--ping-timeout", "2")
    try:
        factory, browser, binance = yield open_pair(reactor, process, fake)
        quiet = browser if silent == "browser" else binance
        quiet.onPing = lambda payload: None  # no pong
        # Nothing else would end the pair within WAIT (the idle timeout is 300 s).
        if silent == "browser":
            assert (yield binance.closed.addTimeout(WAIT, reactor))[1] == 1001
        else:
            closed = yield factory.closed.addTimeout(WAIT, reactor)
            assert closed[1:] == (1014, "upstream connection lost")
    finally:
        process.kill()


# Closing, both ways.

@pytest.mark.parametrize(
    "code, reason",
    [(1000, "normal"), (1001, "going away"), (1002, "protocol"), (1003, "unsupported"),
     (1007, "bad data"), (1008, "policy"), (1009, "too big"), (1010, "extension"),
     (1011, "internal"), (1012, "restart"), (1013, "try later"), (1014, "bad gateway"),
     (3000, "registered"), (4000, "private"), (4999, "last")],
)
@pytest_twisted.inlineCallbacks
def test_binance_close_code_and_reason_reach_browser(reactor, relay, fake, code, reason):
    """Binance closes with C and R: the browser gets C and R, and Binance gets the browser's
    answer (browsers echo the code)."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    binance.close(code, reason)
    assert (yield factory.closed) == (True, code, reason)
    assert isinstance(factory.tcp_end, error.ConnectionDone), "TCP reset after a clean close"
    was_clean, answered, _ = yield binance.closed
    assert was_clean and answered == code


@pytest_twisted.inlineCallbacks
def test_binance_close_without_code_reaches_browser_without_code(reactor, relay, fake):
    """An empty close stays empty: the browser reads 1005."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    binance.close()
    assert (yield factory.closed) == (True, None, None)


@pytest_twisted.inlineCallbacks
def test_binance_dropping_tcp_gives_browser_1014(reactor, relay, fake):
    """Binance vanishing without a close."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    binance.drop()
    assert (yield factory.closed) == (True, 1014, "upstream connection lost")


@pytest.mark.parametrize("code, reason", [(1000, "bye"), (1001, "unload"), (4000, "logout"), (4999, "x" * 120)])
@pytest_twisted.inlineCallbacks
def test_browser_close_code_and_reason_reach_binance(reactor, relay, fake, code, reason):
    """The browser closes with C and R: Binance gets C and R; the browser gets the answer."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    browser.sendCloseFrame(code, reason.encode())
    assert (yield binance.closed) == (True, code, reason)
    assert (yield factory.closed)[:2] == (True, code)


@pytest_twisted.inlineCallbacks
def test_browser_dropping_tcp_gives_binance_1001(reactor, relay, fake):
    """A browser tab killed without a close."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    browser.transport.abortConnection()
    was_clean, code, _ = yield binance.closed
    assert code == 1001


# Logs.

@pytest_twisted.inlineCallbacks
def test_logs_have_one_line_per_connection_and_no_secrets(reactor, relay, fake):
    """The connection's summary line is there; no key, listenToken, listenKey or query anywhere."""
    factory, browser, binance = yield open_pair(reactor, relay, fake)
    browser.sendMessage(b"hello")
    yield binance.next_message()
    peer = "127.0.0.1 [127.0.0.1:%d]" % browser.transport.getHost().port
    binance.close(4002, "done")
    yield factory.closed
    yield wait_for_log(reactor, relay, peer)
    line = next(line for line in relay.text.splitlines() if peer in line)
    assert "upstream_closed" in line and "browser->upstream 1 msgs 5 B" in line
    assert "close browser 4002/relay upstream 4002/peer" in line
    for secret in (TOKEN, fake.listen_key, "token=", "TOKEN", "clientType"):
        assert secret not in relay.text


# Flow control: a stalled reader bounds the relay's memory.

@pytest.fixture
def fresh_relay(fake):
    from twisted.internet import reactor

    process = pytest_twisted.blockon(
        start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/")
    )
    yield process
    process.kill()


FLOOD = 100 << 20
RSS_GROWTH_LIMIT_KIB = 16 << 10


@pytest_twisted.inlineCallbacks
def test_flood_to_a_browser_that_stops_reading_keeps_memory_bounded(reactor, fresh_relay, fake):
    """Binance floods 100 MiB to a browser that stopped reading: the relay stops reading Binance."""
    factory, browser, binance = yield open_pair(reactor, fresh_relay, fake)
    browser.count_only = True
    baseline = fresh_relay.memory_kib("VmHWM")
    browser.transport.pauseProducing()
    flooded = binance.flood(FLOOD)
    yield wait_until_stalled(reactor, lambda: None if flooded.called else binance.flood_sent)
    assert not flooded.called, "the whole flood went into the relay while the browser read nothing"
    browser.transport.resumeProducing()
    yield flooded
    yield wait_until_stalled(reactor, lambda: None if browser.received_bytes >= FLOOD else browser.received_bytes)
    assert browser.received_bytes == FLOOD
    assert fresh_relay.memory_kib("VmHWM") - baseline < RSS_GROWTH_LIMIT_KIB
    browser.sendClose(1000)


@pytest_twisted.inlineCallbacks
def test_flood_to_a_binance_that_stops_reading_keeps_memory_bounded(reactor, fresh_relay, fake):
    """The browser floods 100 MiB to a Binance that stopped reading: the relay stops reading the browser."""
    factory, browser, binance = yield open_pair(reactor, fresh_relay, fake)
    binance.record = False
    baseline = fresh_relay.memory_kib("VmHWM")
    binance.pause_reading()
    flooded = browser.flood(FLOOD)
    yield wait_until_stalled(reactor, lambda: None if flooded.called else browser.flood_sent)
    assert not flooded.called, "the whole flood went into the relay while Binance read nothing"
    binance.resume_reading()
    yield flooded
    yield binance.wait_received_bytes(FLOOD).addTimeout(WAIT, reactor)
    assert fresh_relay.memory_kib("VmHWM") - baseline < RSS_GROWTH_LIMIT_KIB
    browser.sendClose(1000)


@pytest_twisted.inlineCallbacks
def test_a_closed_browser_that_never_reads_is_cut_off_after_close_timeout(reactor, fake):
    """After the closing handshake the relay closes TCP gracefully, letting queued bytes out;
    a browser that never reads them does not keep its connection: --close-timeout later it is
    aborted, and the connection ends (its summary line is logged). The upstream's answer to the
    forwarded close comes behind megabytes of its flood, which the relay must read within the
    same close timeout: 3 s, not 1, so that a busy machine does not make that a race (in CI the
    upstream once took longer than 1 s and was cut off too, with 1006)."""
    relay = yield start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/",
                              "--close-timeout", "3")
    browser = None
    try:
        factory, browser, binance = yield open_pair(reactor, relay, fake)
        browser.count_only = True
        browser.transport.pauseProducing()  # the browser reads nothing from now on
        flooded = binance.flood(FLOOD)
        yield wait_until_stalled(reactor, lambda: None if flooded.called else binance.flood_sent)
        assert not flooded.called
        flooded.addErrback(lambda failure: failure.trap(error.ConnectionLost))  # cut short by the close
        browser.closeHandshakeTimeout = 0  # nor does it give up waiting for the close's answer
        browser.sendClose(1000)
        peer = "127.0.0.1 [127.0.0.1:%d]" % browser.transport.getHost().port
        yield wait_for_log(reactor, relay, peer)
        line = next(line for line in relay.text.splitlines() if peer in line)
        assert "browser_closed" in line and "upstream 1000/" in line
    finally:
        if browser is not None and browser.transport is not None:
            browser.transport.abortConnection()  # it reads nothing, so it would never notice
        relay.kill()


# Shutdown.

@pytest_twisted.inlineCallbacks
def test_sigterm_still_logs_a_connection_it_had_to_abort(reactor, fresh_relay, fake):
    """A browser that never answers the 1001 is aborted after the grace period, and its
    connection's summary line is still logged before the relay exits 0."""
    factory, browser, binance = yield open_pair(reactor, fresh_relay, fake)
    browser.onCloseFrame = lambda code, reason: None  # never answers
    peer = "127.0.0.1 [127.0.0.1:%d]" % browser.transport.getHost().port
    exit_code = yield fresh_relay.terminate().addTimeout(WAIT, reactor)
    assert exit_code == 0
    lines = [line for line in fresh_relay.text.splitlines() if peer in line]
    assert len(lines) == 1 and " shutdown after " in lines[0]
    browser.transport.abortConnection()


@pytest_twisted.inlineCallbacks
def test_sigterm_closes_both_legs_with_1001_and_exits_0(reactor, fresh_relay, fake):
    """SIGTERM: 1001 to the browser and to Binance, then exit status 0 within 5 s."""
    factory, browser, binance = yield open_pair(reactor, fresh_relay, fake)
    started = reactor.seconds()
    exit_code = yield fresh_relay.terminate().addTimeout(WAIT, reactor)
    assert reactor.seconds() - started < 5
    assert exit_code == 0
    assert (yield factory.closed)[1] == 1001
    assert (yield binance.closed)[1] == 1001
