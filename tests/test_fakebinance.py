"""Tests of chatrelay.fakebinance over real loopback sockets."""

import os
import importlib.util
import json
import re
import select
import subprocess
import sys
import time

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint

from chatrelay import fakebinance
from chatrelay.fakebinance import FakeBinance

TIMEOUT = 5.0
ORDER = "20476365073825144832"


class HandshakeFailed(Exception):
    """The client's opening handshake failed (status is the HTTP status, if any)."""

    def __init__(self, status, reason):
        super().__init__(status, reason)
        self.status = status


class Client(WebSocketClientProtocol):
    """A test client recording everything the fake sends."""

    def __init__(self):
        super().__init__()
        self.opened = defer.Deferred()
        self.closed = defer.Deferred()
        self.close_info = None
        self.messages = defer.DeferredQueue()
        self.pongs = defer.DeferredQueue()
        self.received_bytes = 0
        self.keep = True
        self._byte_waiters = []

    def onOpen(self):
        """Report the open."""
        self.opened.callback(self)

    def onMessage(self, payload, isBinary):
        """Queue the message (unless keep is off) and count its bytes."""
        self.received_bytes += len(payload)
        if self.keep:
            self.messages.put((payload, isBinary))
        for waiter in [w for w in self._byte_waiters if self.received_bytes >= w[0]]:
            self._byte_waiters.remove(waiter)
            waiter[1].callback(self.received_bytes)

    def onPong(self, payload):
        """Queue the pong."""
        self.pongs.put(payload)

    def onClose(self, wasClean, code, reason):
        """Fail opened if the handshake never finished, then fire closed."""
        self.close_info = (wasClean, code, reason)
        if not self.opened.called:
            status_line = getattr(self, "http_status_line", None) or ""
            parts = status_line.split()
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            self.opened.errback(HandshakeFailed(status, reason))
        self.closed.callback(self.close_info)

    def wait_bytes(self, total):
        """A Deferred firing once received_bytes >= total."""
        if self.received_bytes >= total:
            return defer.succeed(self.received_bytes)
        d = defer.Deferred()
        self._byte_waiters.append((total, d))
        return d

    def send_json(self, obj):
        """Send obj as a JSON text frame."""
        self.sendMessage(json.dumps(obj).encode(), isBinary=False)

    @defer.inlineCallbacks
    def next_json(self):
        """Wait for the next text frame and decode it as JSON."""
        payload, is_binary = yield within(self.messages.get())
        assert not is_binary
        return json.loads(payload)


def within(d, seconds=TIMEOUT):
    """Wait for d (taking its result) without cancelling it; fail with TimeoutError after seconds."""
    from twisted.internet import reactor

    out = defer.Deferred()

    def fire(result):
        if not out.called:
            out.callback(result)

    def expire():
        if not out.called:
            out.errback(defer.TimeoutError(f"not fired within {seconds} s"))

    call = reactor.callLater(seconds, expire)
    d.addBoth(fire)

    def cleanup(result):
        if call.active():
            call.cancel()
        return result

    return out.addBoth(cleanup)


class Env:
    """Creates fakes and clients for one test and tears them all down."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.fakes = []
        self.clients = []

    @defer.inlineCallbacks
    def fake(self, **options):
        """A listening FakeBinance on 127.0.0.1."""
        fake = FakeBinance(self.reactor, **options)
        self.fakes.append(fake)
        yield fake.listen()
        return fake

    @defer.inlineCallbacks
    def connect(self, url, echo_close=True, **options):
        """Connect a Client to url and wait for it to open (HandshakeFailed otherwise)."""
        factory = WebSocketClientFactory(url, reactor=self.reactor)
        factory.protocol = Client
        factory.setProtocolOptions(openHandshakeTimeout=TIMEOUT, closeHandshakeTimeout=TIMEOUT,
                                   echoCloseCodeReason=echo_close, failByDrop=False, **options)
        endpoint = TCP4ClientEndpoint(self.reactor, factory.host, factory.port, timeout=TIMEOUT)
        client = yield within(endpoint.connect(factory))
        self.clients.append(client)
        yield within(client.opened)
        return client

    @defer.inlineCallbacks
    def pair(self, fake, **options):
        """Connect a client with a fresh URL; return (client, the fake's ChatConnection)."""
        conn = fake.next_connection()
        client = yield self.connect(fake.chat_url(), **options)
        conn = yield within(conn)
        return client, conn

    @defer.inlineCallbacks
    def close(self):
        """Abort every client, stop every fake and wait until all are gone."""
        for client in self.clients:
            if client.close_info is None:
                client.transport.abortConnection()
        yield within(defer.gatherResults([c.closed for c in self.clients if c.close_info is None]))
        yield within(defer.gatherResults([f.stop() for f in self.fakes]))


@pytest_twisted.async_yield_fixture
async def env(reactor):
    """Per-test fakes and clients, cleaned up afterwards."""
    environment = Env(reactor)
    yield environment
    await environment.close()


# -- credentials and handshake --------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_credentials_have_binance_shapes(env):
    fake = yield env.fake()
    first, second = fake.issue_credential(), fake.issue_credential()
    assert first["chatWssUrl"] == f"ws://127.0.0.1:{fake.port}/chat"
    assert re.fullmatch(r"c2c_[0-9a-f]{32}_v2", first["listenKey"])
    assert re.fullmatch(r"TOKEN[0-9a-f]{32}", first["listenToken"])
    assert first["listenKey"] == second["listenKey"]
    assert first["listenToken"] != second["listenToken"]
    url = fake.chat_url()
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{fake.port}/chat/{first['listenKey']}\?token=TOKEN[0-9a-f]{{32}}&clientType=web", url)


@pytest_twisted.inlineCallbacks
def test_handshake_records_request(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    assert conn.path == f"/chat/{fake.listen_key}"
    assert conn.params["clientType"] == "web"
    assert conn.params["token"].startswith("TOKEN")
    assert conn.headers["upgrade"].lower() == "websocket"
    assert conn.peer.startswith("tcp4:127.0.0.1:")
    assert fake.connections == [conn]
    assert fake.handshakes_seen == 1


@pytest_twisted.inlineCallbacks
def test_bad_unknown_or_used_token_is_refused_with_401(env):
    fake = yield env.fake()
    url = fake.chat_url()
    yield env.connect(url)
    base = url.split("?")[0]
    bad_urls = [
        url,  # token already used
        f"{base}?token=TOKEN{'0' * 32}&clientType=web",
        f"{base}?clientType=web",
        fake.chat_url().replace(fake.listen_key, "c2c_" + "1" * 32 + "_v2"),
    ]
    for bad in bad_urls:
        with pytest.raises(HandshakeFailed) as failed:
            yield env.connect(bad)
        assert failed.value.status == 401
    with pytest.raises(HandshakeFailed) as failed:
        yield env.connect(f"ws://127.0.0.1:{fake.port}/other")
    assert failed.value.status == 404
    assert fake.handshakes_seen == 6
    # missing clientType is accepted
    yield env.connect(fake.chat_url().replace("&clientType=web", ""))


@pytest_twisted.inlineCallbacks
def test_check_tokens_off_accepts_anything_under_chat(env):
    fake = yield env.fake(check_tokens=False)
    client = yield env.connect(f"ws://127.0.0.1:{fake.port}/chat/c2c_any_v2?token=whatever")
    assert client.state == client.STATE_OPEN


@pytest_twisted.inlineCallbacks
def test_refuse_next(env):
    fake = yield env.fake()
    fake.refuse_next(2, status=503)
    for _ in range(2):
        with pytest.raises(HandshakeFailed) as failed:
            yield env.connect(fake.chat_url())
        assert failed.value.status == 503
    yield env.connect(fake.chat_url())
    assert fake.handshakes_seen == 3


@pytest_twisted.inlineCallbacks
def test_delay_next_handshake(env):
    fake = yield env.fake()
    fake.delay_next_handshake(1.0)
    started = time.monotonic()
    yield env.connect(fake.chat_url())
    assert time.monotonic() - started >= 0.95
    started = time.monotonic()
    yield env.connect(fake.chat_url())
    assert time.monotonic() - started < 0.9  # only the next handshake was delayed


@pytest_twisted.inlineCallbacks
def test_stop_aborts_connections_and_closes_port(env, reactor):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    fake.delay_next_handshake(10)  # a connection still in its opening handshake
    pending = env.connect(fake.chat_url())
    pending.addErrback(lambda f: f.trap(HandshakeFailed))
    yield _until(lambda: fake.handshakes_seen == 2, reactor)
    yield within(fake.stop())
    assert fake.connections == []
    was_clean, code, _ = yield within(client.closed)
    assert (was_clean, code) == (False, 1006)
    assert conn.close_info[:2] == (False, 1006)
    yield within(pending)
    with pytest.raises(error.ConnectionRefusedError):
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", fake.port, timeout=TIMEOUT).connect(
            WebSocketClientFactory(f"ws://127.0.0.1:{fake.port}/chat"))


def _until(predicate, reactor, seconds=TIMEOUT):
    """A Deferred firing once predicate() is true, checked every reactor turn (fails after seconds)."""
    d = defer.Deferred()
    deadline = time.monotonic() + seconds

    def check():
        if predicate():
            d.callback(None)
        elif time.monotonic() > deadline:
            d.errback(defer.TimeoutError("condition not reached"))
        else:
            reactor.callLater(0, check)

    check()
    return d


# -- messages --------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_text_is_stored_and_echoed_with_id_and_uuid(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    sent = {"type": "text", "uuid": "1682102167020", "orderNo": ORDER, "content": "Hi, paid",
            "self": True, "clientType": "web", "createTime": 1682102167020, "sendStatus": 0}
    before = int(time.time() * 1000)
    client.send_json(sent)
    echo = yield client.next_json()
    assert echo["uuid"] == "1682102167020"
    assert re.fullmatch(r"[1-9][0-9]{18}", echo["id"])
    assert echo["type"] == "text" and echo["content"] == "Hi, paid" and echo["orderNo"] == ORDER
    assert echo["self"] is True and echo["status"] == "unread"
    assert before <= echo["createTime"] <= int(time.time() * 1000)
    assert fake.messages == [echo]
    payload, is_binary = yield within(conn.next_message())
    assert json.loads(payload) == sent and not is_binary
    assert conn.received == [(payload, False)] and conn.received_bytes == len(payload)
    # flat variant with topicId only
    client.send_json({"type": "text", "content": "again", "topicId": ORDER, "topicType": "ORDER", "uuid": "u2"})
    second = yield client.next_json()
    assert second["uuid"] == "u2" and second["orderNo"] == ORDER
    assert int(second["id"]) > int(echo["id"])


@pytest.mark.parametrize("frame, uuid, order_no", [
    ({"type": "image", "uuid": "i1", "orderNo": ORDER, "content": "x", "imageUrl": "https://x/y.jpg"}, "i1", ORDER),
    ({"type": "text", "uuid": "t1", "content": "no order"}, "t1", ""),
    ("not json at all", None, ""),
    ([1, 2, 3], None, ""),
])
@pytest_twisted.inlineCallbacks
def test_illegal_param_errors_keep_the_socket_open(env, frame, uuid, order_no):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    if isinstance(frame, str):
        client.sendMessage(frame.encode(), isBinary=False)
    else:
        client.send_json(frame)
    reply = yield client.next_json()
    assert reply == {"type": "error", "content": "ILLEGAL_PARAM", "uuid": uuid, "orderNo": order_no}
    assert fake.messages == []
    client.send_json({"type": "text", "uuid": "ok", "orderNo": ORDER, "content": "still here"})
    echo = yield client.next_json()
    assert echo["uuid"] == "ok"


@pytest_twisted.inlineCallbacks
def test_unknown_types_and_binary_get_no_reply(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    client.send_json({"type": "ping"})
    client.send_json({"type": "ack", "id": "1"})
    client.sendMessage(b"\x00\x01", isBinary=True)
    client.send_json({"type": "text", "uuid": "bad"})  # answered: proves the three above were not
    reply = yield client.next_json()
    assert reply["type"] == "error" and reply["uuid"] == "bad"
    yield within(conn.wait_received_bytes(conn.received_bytes))
    assert [m[1] for m in conn.received] == [False, False, True, False]


@pytest_twisted.inlineCallbacks
def test_echo_off(env):
    fake = yield env.fake(echo=False)
    client, conn = yield env.pair(fake)
    client.send_json({"type": "text", "uuid": "a", "orderNo": ORDER, "content": "quiet"})
    client.send_json({"type": "text", "uuid": "b"})
    reply = yield client.next_json()
    assert reply["type"] == "error" and reply["uuid"] == "b"
    assert [m["uuid"] for m in fake.messages] == ["a"]


@pytest_twisted.inlineCallbacks
def test_pushes(env):
    fake = yield env.fake(push_statistics_on_open=True)
    client, conn = yield env.pair(fake)
    stats = yield client.next_json()
    assert stats == {"type": "statistics", "subType": "unreadChatCount", "orderNo": "", "totalCount": 0}
    frame = conn.push_counterparty_text(ORDER, "hello")
    got = yield client.next_json()
    assert got == frame
    assert got["self"] is False and got["fromNickname"] and got["type"] == "text" and got["uuid"]
    system = conn.push_system(ORDER, "seller_completed")
    got = yield client.next_json()
    assert got == system and got["type"] == "system"
    assert json.loads(got["content"]) == {"type": "seller_completed", "orderNo": ORDER,
                                          "nickName": fake.counterparty_nickname,
                                          "realName": fake.counterparty_real_name}
    assert int(system["id"]) > int(frame["id"])
    conn.send_binary(b"\xff")
    conn.push({"type": "recall", "id": frame["id"]})
    assert (yield within(client.messages.get())) == (b"\xff", True)
    assert (yield client.next_json()) == {"type": "recall", "id": frame["id"]}


@pytest_twisted.inlineCallbacks
def test_record_off_counts_bytes_only(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    conn.record = False
    for _ in range(3):
        client.sendMessage(b"\x07" * 100_000, isBinary=True)
    total = yield within(conn.wait_received_bytes(300_000))
    assert total == 300_000 and conn.received == []


# -- pings -----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_client_ping_gets_pong_and_is_recorded(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    client.sendPing(b"abc")
    assert (yield within(client.pongs.get())) == b"abc"
    assert (yield within(conn.next_ping())) == b"abc"
    assert conn.pings_received == [b"abc"]


@pytest_twisted.inlineCallbacks
def test_server_ping_and_pong_recorded(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    conn.ping(b"srv")
    assert (yield within(conn.next_pong())) == b"srv"
    assert conn.pongs_received == [b"srv"]


@pytest_twisted.inlineCallbacks
def test_periodic_server_pings(env):
    fake = yield env.fake(server_ping_interval=0.05)
    client, conn = yield env.pair(fake)
    first = yield within(conn.next_pong())
    second = yield within(conn.next_pong())
    assert (first, second) == (b"1", b"2")


# -- closes ----------------------------------------------------------------------


def test_importing_allows_1014_once():
    spec = importlib.util.spec_from_file_location("fakebinance_copy", fakebinance.__file__)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # a second import, sys.modules untouched
    assert fakebinance.WebSocketProtocol is WebSocketProtocol
    assert WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED.count(1014) == 1


@pytest.mark.parametrize("code, reason", [
    (None, None), (1014, "upstream gone"), (1001, None), (1012, "restart"), (4000, "custom"), (1000, "Bye"),
])
@pytest_twisted.inlineCallbacks
def test_server_close_reaches_client_verbatim(env, code, reason):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    conn.close(code, reason)
    assert (yield within(client.closed)) == (True, code, reason)
    # the test client echoes the code, so the fake sees its own code back
    assert (yield within(conn.closed)) == (True, code, reason)
    assert fake.connections == []


@pytest_twisted.inlineCallbacks
def test_client_close_is_echoed(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake, echo_close=False)
    client.sendClose(4001, "bye")
    assert (yield within(conn.closed)) == (True, 4001, "bye")
    assert (yield within(client.closed)) == (True, 4001, "bye")


@pytest_twisted.inlineCallbacks
def test_client_reply_code_is_reported(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake, echo_close=False)
    conn.close(1014, "x")
    assert (yield within(client.closed)) == (True, 1014, "x")
    assert (yield within(conn.closed)) == (True, 1000, None)


@pytest_twisted.inlineCallbacks
def test_drop_is_unclean(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    conn.drop()
    was_clean, code, _ = yield within(client.closed)
    assert (was_clean, code) == (False, 1006)
    was_clean, code, _ = yield within(conn.closed)
    assert (was_clean, code) == (False, 1006)


@pytest.mark.parametrize("policy", ["allow", "close_older", "close_newer"])
@pytest_twisted.inlineCallbacks
def test_duplicate_policy(env, policy):
    fake = yield env.fake(duplicate_policy=policy)
    older, older_conn = yield env.pair(fake)
    newer, newer_conn = yield env.pair(fake)
    kicked, kept = {"allow": (None, None), "close_older": (older, newer),
                    "close_newer": (newer, older)}[policy]
    if kicked is not None:
        assert (yield within(kicked.closed)) == (True, 1000, "Bye")
    survivors = [kept] if kept is not None else [older, newer]
    for client in survivors:
        client.send_json({"type": "text", "uuid": "alive", "orderNo": ORDER, "content": "x"})
        assert (yield client.next_json())["uuid"] == "alive"
    assert len(fake.connections) == len(survivors)


# -- flood and backpressure ---------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_flood_respects_backpressure(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    client.keep = False
    client.transport.pauseProducing()  # the reader stalls
    total = 32 << 20
    flooded = conn.flood(total, message_size=1 << 20)
    sent_at_pause = yield within(conn.paused_once)
    assert 0 < sent_at_pause < total and not flooded.called
    client.transport.resumeProducing()
    assert (yield within(client.wait_bytes(total), 20)) == total
    assert (yield within(flooded)) == total
    assert conn.flood_sent == total


@pytest_twisted.inlineCallbacks
def test_fake_pause_and_resume_reading(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    conn.pause_reading()
    client.send_json({"type": "text", "uuid": "late", "orderNo": ORDER, "content": "x"})
    client.sendPing(b"p")  # the fake is not reading, so no pong yet
    pong = client.pongs.get()
    assert not pong.called and conn.received == []
    conn.resume_reading()
    assert (yield within(pong)) == b"p"
    assert (yield client.next_json())["uuid"] == "late"


@pytest_twisted.inlineCallbacks
def test_flood_stops_when_connection_closes(env):
    fake = yield env.fake()
    client, conn = yield env.pair(fake)
    client.keep = False
    client.transport.pauseProducing()
    flooded = conn.flood(64 << 20)
    yield within(conn.paused_once)
    conn.drop()
    with pytest.raises(error.ConnectionLost):
        yield within(flooded)


# -- standalone mode -------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_main_prints_usable_urls(env):
    proc = subprocess.Popen([sys.executable, "-m", "chatrelay.fakebinance", "--listen", "tcp:0:interface=127.0.0.1",
                             "--urls", "2"], stdout=subprocess.PIPE)
    try:
        urls, buffered = [], b""
        deadline = time.monotonic() + 10
        while len(urls) < 2 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                urls += [line.decode().strip() for line in lines if line.startswith(b"ws://")]
        assert len(urls) == 2 and urls[0] != urls[1]
        client = yield env.connect(urls[0])
        client.send_json({"type": "text", "uuid": "cli", "orderNo": ORDER, "content": "x"})
        assert (yield client.next_json())["uuid"] == "cli"
        client.sendClose(1000)
        yield within(client.closed)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
