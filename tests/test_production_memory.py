"""Production safeguards, in memory: limits, request-head bounds, origins, tickets, health, metrics."""

import ipaddress
import json

import pytest

from twisted.internet import error
from twisted.logger import formatEvent

from chatrelay.clients import ClientAddresses
from chatrelay.closecodes import metric_label
from chatrelay.credentials import mint_ticket
from chatrelay.gate import Refusal
from chatrelay.limits import Limits, client_key
from chatrelay.status import StatusPages
from tests.memory import TOKEN, UPSTREAM_URL, BrowserClient, close_frame_after_101, relay_query, upgrade_request


def get(harness, path, peer="127.0.0.1", headers=""):
    """A plain HTTP GET; returns (status, body)."""
    client = harness.raw(peer=peer)
    client.transport.write(f"GET {path} HTTP/1.1\r\nHost: relay.test\r\n{headers}\r\n".encode())
    harness.flush()
    head, _, body = bytes(client.received).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


# Connection limits.

def test_connections_beyond_the_maximum_get_1013(make_harness):
    """--max-connections: the next browser is told to try again later."""
    harness = make_harness(limits=Limits(max_connections=2, max_per_client=10))
    harness.browser(peer="192.0.2.1")
    harness.browser(peer="192.0.2.2")
    third = harness.browser(peer="192.0.2.3")
    assert third.closed[1] == 1013
    assert len(harness.held) == 2


def test_connections_per_client_address_are_limited(make_harness):
    """--max-connections-per-ip: one address cannot take the relay for itself."""
    harness = make_harness(limits=Limits(max_connections=100, max_per_client=2))
    harness.browser(peer="192.0.2.1")
    harness.browser(peer="192.0.2.1")
    assert harness.browser(peer="192.0.2.1").closed[1] == 1013
    other = harness.browser(peer="192.0.2.2")
    assert other.closed is None


@pytest.mark.parametrize("query", [relay_query(key="wrong"), relay_query(target="wss://elsewhere.example/chat/x")],
                         ids=["bad-key", "forbidden-target"])
def test_a_refused_browser_that_never_answers_holds_its_slot_two_seconds(make_harness, monkeypatch, query):
    """A refusal waits for the browser's answer to its close for two seconds, not --close-timeout
    (5 s): a browser answers within a round trip, and refused connections must not fill the relay."""
    harness = make_harness(limits=Limits(max_connections=1, max_per_client=10))
    with monkeypatch.context() as patch:
        patch.setattr(BrowserClient, "onCloseFrame", lambda self, code, reason: None)  # never answers
        harness.browser(query=query, peer="192.0.2.1")
    assert harness.factory.limits.total == 1
    harness.advance(1.9)
    assert harness.factory.limits.total == 1
    harness.advance(0.2)
    assert harness.factory.limits.total == 0
    admitted = harness.browser(peer="192.0.2.2")
    harness.upstream()
    assert admitted.state == admitted.STATE_OPEN and admitted.closed is None


def test_a_closed_connection_frees_its_slot(make_harness):
    """Slots come back when connections go."""
    harness = make_harness(limits=Limits(max_connections=100, max_per_client=1))
    first = harness.browser(peer="192.0.2.1")
    harness.upstream()
    first.sendCloseFrame(1000)
    harness.flush()
    assert harness.factory.limits.total == 0
    assert harness.browser(peer="192.0.2.1").closed is None


def test_forwarded_for_counts_only_from_trusted_proxies(make_harness):
    """Behind nginx (a trusted proxy) the limit applies to X-Forwarded-For's client, not nginx."""
    harness = make_harness(limits=Limits(max_per_client=1), clients=ClientAddresses(["127.0.0.1"]))
    via_nginx = {"X-Forwarded-For": "198.51.100.1"}
    harness.browser(peer="127.0.0.1", headers=via_nginx)
    assert harness.browser(peer="127.0.0.1", headers={"X-Forwarded-For": "198.51.100.2"}).closed is None
    assert harness.browser(peer="127.0.0.1", headers=via_nginx).closed[1] == 1013
    # From an untrusted peer the header is ignored: the TCP peer is the client.
    harness.browser(peer="192.0.2.5", headers={"X-Forwarded-For": "198.51.100.9"})
    assert harness.browser(peer="192.0.2.5", headers={"X-Forwarded-For": "198.51.100.10"}).closed[1] == 1013


@pytest.mark.parametrize("line_break", [b"\x85", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\r", b"\n"])
def test_a_header_hidden_in_another_cannot_pose_as_forwarded_for(make_harness, line_break):
    """nginx passes bytes such as 0x85 and 0x0b on inside a header's value, and Autobahn's parser
    also breaks lines there: a client hiding "X-Forwarded-For: <any address>" in its User-Agent
    must still count as the address nginx's own X-Forwarded-For line names."""
    harness = make_harness(limits=Limits(max_per_client=1), clients=ClientAddresses(["127.0.0.1"]))

    def through_nginx(forged):
        client = harness.raw(peer="127.0.0.1")
        # nginx writes the headers it sets (its X-Forwarded-For) before the client's own.
        client.transport.write(upgrade_request(extra_headers=(
            b"X-Forwarded-For: 198.51.100.1\r\n"
            b"User-Agent: M" + line_break + b"X-Forwarded-For: " + forged + b"\r\n").decode("latin-1")))
        harness.flush()
        return client

    first = through_nginx(b"203.0.113.1")
    harness.upstream()
    harness.flush()
    assert bytes(first.received).startswith(b"HTTP/1.1 101") and not first.transport.disconnected
    assert close_frame_after_101(through_nginx(b"203.0.113.2").received)[0] == 1013


@pytest.mark.parametrize(
    "peer, header, expected",
    [
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "203.0.113.9, 198.51.100.1", "198.51.100.1"),  # rightmost untrusted hop
        ("127.0.0.1", "198.51.100.1, 127.0.0.1", "198.51.100.1"),
        ("127.0.0.1", "garbage", "127.0.0.1"),
        ("192.0.2.1", "198.51.100.1", "192.0.2.1"),  # untrusted peer: header ignored
        ("127.0.0.1", None, "127.0.0.1"),
        ("::ffff:127.0.0.1", "198.51.100.1", "198.51.100.1"),  # IPv4 on a dual-stack listener
        ("127.0.0.1", "198.51.100.1, ::ffff:127.0.0.1", "198.51.100.1"),
        ("unix", "198.51.100.1", "198.51.100.1"),  # a Unix socket peer, trusted: "unix" listed
    ],
)
def test_client_address_resolution(peer, header, expected):
    """Only a trusted proxy's X-Forwarded-For is believed, and only its rightmost foreign hop."""
    assert ClientAddresses(["127.0.0.0/8", "unix"]).resolve(peer, header) == expected


def test_unix_socket_peers_are_not_trusted_unless_listed():
    """A Unix socket's peer has no address: it is "unix", trusted only when listed."""
    assert ClientAddresses(["127.0.0.0/8"]).resolve("unix", "198.51.100.1") == "unix"


def test_trusted_proxy_answers_stay_right_when_remembered_and_forgotten():
    """The answer for a peer is remembered, and stays right when the bounded memory is cleared."""
    clients = ClientAddresses(["127.0.0.0/8"], max_remembered=2)
    peers = ["127.0.0.1", "192.0.2.1", "127.0.0.2", "192.0.2.2", "127.0.0.1", "192.0.2.1"]
    assert [clients.trusts(peer) for peer in peers + peers] == [True, False, True, False, True, False] * 2
    assert len(clients._trusts) <= 2
    assert not ClientAddresses().trusts("127.0.0.1")


def test_ipv6_clients_are_limited_per_64(make_harness):
    """One IPv6 host commonly holds a whole /64: the per-client limit counts the /64."""
    harness = make_harness(limits=Limits(max_connections=100, max_per_client=2))
    harness.browser(peer="2001:db8::1")
    harness.browser(peer="2001:db8::2:3")
    assert harness.browser(peer="2001:db8::ffff").closed[1] == 1013
    assert harness.browser(peer="2001:db8:0:1::1").closed is None  # another /64
    # IPv4 clients of a dual-stack listener (::ffff:a.b.c.d) count by their IPv4 address.
    for peer in ("::ffff:192.0.2.1", "::ffff:192.0.2.2", "::ffff:192.0.2.3", "192.0.2.3"):
        assert harness.browser(peer=peer).closed is None
    assert harness.browser(peer="::ffff:192.0.2.3").closed[1] == 1013
    assert len(harness.held) == 7


def test_ipv6_counts_are_given_back_per_64():
    """An IPv6 /64's connections, counted and given back again and again, leave no count behind."""
    limits = Limits(max_connections=100, max_per_client=2)
    for _ in range(3):
        limits.admit("2001:db8::1")
        limits.admit("2001:db8::2:3")
        with pytest.raises(Refusal):
            limits.admit("2001:db8::ffff")
        limits.release("2001:db8::2:3")
        limits.release("2001:db8::1")
    assert limits.total == 0 and not limits.admitted.by_key


@pytest.mark.parametrize(
    "client, key",
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # an IPv4 client of a dual-stack listener
        ("unix", "unix"),
        ("2001:db8:0:1:ffff:ffff:ffff:ffff", str(ipaddress.IPv6Network("2001:db8:0:1::/64"))),
        ("2001:db8::8a2e:370:7334", str(ipaddress.IPv6Network("2001:db8::/64"))),
        ("::1", str(ipaddress.IPv6Network("::/64"))),
    ],
)
def test_the_per_client_key_is_the_address_or_its_ipv6_64(client, key):
    """What the per-client limit counts a client as, the same when asked again."""
    assert client_key(client) == client_key(client) == key


def test_an_ipv6_zone_is_no_part_of_a_forwarded_client():
    """fe80::1%eth0 in X-Forwarded-For (behind a trusted proxy) is the client fe80::1."""
    assert ClientAddresses(["127.0.0.0/8"]).resolve("127.0.0.1", "fe80::1%" + "x" * 100) == "fe80::1"


# The request head: bounded, and junk dropped quickly without disturbing anyone.

@pytest.mark.parametrize(
    "data, status",
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello on a plain port
        (b"\x00\x01\x02junk", 400),
        (b"get / HTTP/1.1\r\n", 400),
        (b"GET /?" + b"x" * 5000 + b" HTTP/1.1\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"y" * 9000, 431),
    ],
)
def test_bad_request_heads_are_refused_at_once(make_harness, data, status):
    """Junk, TLS on a plain port, oversized lines or headers: an HTTP error, then the door."""
    harness = make_harness()
    bystander = harness.browser()
    upstream = harness.upstream()
    client = harness.raw()
    client.transport.write(data)
    harness.flush()
    assert bytes(client.received).startswith(f"HTTP/1.1 {status}".encode())
    assert client.transport.disconnected
    bystander.sendMessage(b"still here")
    harness.flush()
    assert upstream.messages == [(b"still here", False)]


@pytest.mark.parametrize(
    "line, status",
    [
        ("GET /chat-relay/?{query} HTTP/1.1 extra", 400),  # Autobahn would log the whole line
        ("GET //[x/?{query} HTTP/1.1", 400),  # ... the URI it cannot parse
        ("GET /chat-relay/?{query}#secret-fragment HTTP/1.1", 400),  # ... the fragment
        ("POST /chat-relay/?{query} HTTP/1.1", 405),
        ("GET /chat-relay/?{query} HTTP/1.0", 505),
    ],
)
def test_bad_upgrade_request_lines_are_refused_without_echoing_secrets(make_harness, log_events, line, status):
    """The request line carries the key and the target's listenToken: a line Autobahn would
    refuse is refused with a fixed reason, in the response and in the log."""
    harness = make_harness()
    client = harness.raw()
    head = upgrade_request().decode("latin-1")
    head = line.format(query=relay_query()) + head[head.index("\r\n"):]
    client.transport.write(head.encode("latin-1"))
    harness.flush()
    response = bytes(client.received).decode("latin-1")
    assert response.startswith(f"HTTP/1.1 {status} ")
    assert client.transport.disconnected and harness.held == []
    logged = " ".join(formatEvent(event) or "" for event in log_events)
    for secret in (TOKEN, "TOKEN123", "secret-fragment"):
        assert secret not in response and secret not in logged


def test_refusal_reasons_quoting_headers_are_printable(make_harness, log_events):
    """Autobahn quotes some headers in its refusals (here the version it cannot parse): control
    characters from them never reach the log or the status line, and the quote is bounded."""
    harness = make_harness()
    client = harness.raw()
    version = "13\x1b[2J\x07" + "x" * 500
    request = upgrade_request().replace(b"Version: 13", f"Version: {version}".encode("latin-1"))
    client.transport.write(request)
    harness.flush()
    status_line = bytes(client.received).split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 400 ") and b"Sec-WebSocket-Version" in status_line
    assert all(32 <= byte < 127 for byte in status_line) and len(status_line) < 240
    logged = [formatEvent(event) for event in log_events if "failing" in (event.get("log_format") or "")]
    assert logged and not any("\x1b" in line or "\x07" in line or "x" * 300 in line for line in logged)


def test_a_second_request_head_is_not_a_second_connection(make_harness):
    """Bytes sent before the 101 are not parsed as another request: one admission, one
    upstream attempt, and they reach the WebSocket parser after the 101 (junk there: 1002)."""
    harness = make_harness(limits=Limits(max_connections=10, max_per_client=3))
    client = harness.raw()
    client.transport.write(upgrade_request())
    harness.flush()
    client.transport.write(upgrade_request(relay_query(key="wrong")))
    harness.flush()
    assert harness.factory.limits.total == 1 and len(harness.held) == 1
    harness.upstream()
    assert close_frame_after_101(client.received)[0] == 1002
    client.transport.loseConnection()
    harness.flush()
    assert harness.factory.limits.total == 0


def test_data_before_the_101_is_bounded(make_harness):
    """A client cannot make the relay buffer without bound while its upstream is opening."""
    harness = make_harness(limits=Limits(max_head_bytes=8192))
    client = harness.raw()
    client.transport.write(upgrade_request())
    harness.flush()
    (_, connecting), = harness.held
    for _ in range(3):
        client.transport.write(b"x" * 4000)
        harness.flush()
    assert bytes(client.received).startswith(b"HTTP/1.1 400 ")
    assert client.transport.disconnected and connecting.called
    assert harness.factory.limits.total == 0


PARTIAL_HEAD = b"GET /chat-relay/?key=x HTTP/1.1\r\nHost: a\r\n"


def test_request_heads_still_to_come_are_limited_per_address(make_harness):
    """A connection sending its head slowly counts before it is admitted: beyond
    --max-connections-per-ip of them from one address, the next is dropped at once; other
    addresses are not affected, and a slot comes back once a head is complete."""
    harness = make_harness(limits=Limits(max_connections=100, max_per_client=2))
    slow = [harness.raw(peer="192.0.2.1") for _ in range(2)]
    for client in slow:
        client.transport.write(PARTIAL_HEAD)
    harness.flush()
    third = harness.raw(peer="192.0.2.1")
    assert third.transport.disconnected and bytes(third.received) == b""
    assert not any(client.transport.disconnected for client in slow)
    other = harness.browser(peer="192.0.2.2")
    harness.upstream()
    assert other.opened
    slow[0].transport.write(b"\r\n")  # its head is complete (a plain request: 404)
    harness.flush()
    assert not harness.raw(peer="192.0.2.1").transport.disconnected
    counted = harness.factory.metrics.handshakes.labels("over_head_limit", "none")._value.get()
    assert counted == 1


def test_request_heads_still_to_come_are_limited_in_all(make_harness):
    """At most --max-connections of them in all, from any number of addresses."""
    harness = make_harness(limits=Limits(max_connections=2, max_per_client=10))
    first, second = harness.raw(peer="192.0.2.1"), harness.raw(peer="192.0.2.2")
    assert harness.raw(peer="192.0.2.3").transport.disconnected
    assert not (first.transport.disconnected or second.transport.disconnected)


def test_a_trusted_proxys_request_heads_count_only_in_all(make_harness):
    """nginx carries every browser's connection: its heads are not limited per address."""
    harness = make_harness(limits=Limits(max_connections=100, max_per_client=2),
                           clients=ClientAddresses(["192.0.2.8"]))
    clients = [harness.raw(peer="192.0.2.8") for _ in range(5)]
    assert not any(client.transport.disconnected for client in clients)
    assert harness.factory.limits.heads.total == 5


def test_request_heads_are_counted_until_each_ends(make_harness):
    """Complete, refused, timed out or gone: each head still to come is counted until then."""
    harness = make_harness(limits=Limits(handshake_timeout=10.0))
    complete, refused, slow, gone = (harness.raw(peer=f"192.0.2.{n}") for n in range(1, 5))
    assert harness.factory.limits.heads.total == 4
    complete.transport.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    refused.transport.write(b"\x16\x03\x01")  # TLS spoken to a plain port: 400 at once
    slow.transport.write(PARTIAL_HEAD)
    gone.transport.loseConnection()
    harness.flush()
    assert harness.factory.limits.heads.total == 1
    harness.advance(11)
    assert slow.transport.disconnected and harness.factory.limits.heads.total == 0
    assert harness.factory.limits.heads.by_key == {}


def test_slow_request_head_is_dropped(make_harness):
    """Slowloris: a head not complete within --handshake-timeout is dropped."""
    harness = make_harness(limits=Limits(handshake_timeout=10.0))
    client = harness.raw()
    client.transport.write(b"GET /chat-relay/?key=x HTTP/1.1\r\nHost: a\r\n")
    harness.advance(9.0)
    assert not client.transport.disconnected
    harness.advance(1.5)
    assert client.transport.disconnected


def test_a_late_head_still_gets_the_whole_upstream_attempt(make_harness):
    """A head sent just inside --handshake-timeout, then an upstream that never answers: the
    browser still hears 1014 after --connect-timeout, not a dropped connection."""
    harness = make_harness(limits=Limits(handshake_timeout=10.0), connect_timeout=10.0)
    client = harness.raw()
    harness.advance(9.5)
    client.transport.write(upgrade_request())
    harness.flush()
    harness.advance(9.9)
    assert not client.transport.disconnected and not client.received
    harness.advance(0.2)
    assert close_frame_after_101(client.received) == (1014, "upstream connect timed out")


def test_idle_pair_is_closed_with_1001(make_harness):
    """No message either way for --idle-timeout: both legs hear 1001."""
    harness = make_harness(limits=Limits(idle_timeout=100.0))
    browser = harness.browser()
    upstream = harness.upstream()
    harness.advance(60)
    browser.sendMessage(b'{"type":"ping"}')
    harness.flush()
    harness.advance(100)
    assert browser.closed is None
    harness.advance(100)
    assert browser.closed[1] == 1001 and upstream.closed[1] == 1001


def test_a_pair_with_traffic_from_binance_only_is_not_idle(make_harness):
    """A user who only reads (Binance pushes, the browser sends nothing) keeps the pair open."""
    harness = make_harness(limits=Limits(idle_timeout=100.0))
    browser = harness.browser()
    upstream = harness.upstream()
    for _ in range(5):
        harness.advance(60)
        upstream.sendMessage(b'{"type":"message"}')
        harness.flush()
    assert browser.closed is None and len(browser.messages) == 5
    for _ in range(3):  # a Clock runs no timer that a timer set during the same advance
        harness.advance(100)
    assert browser.closed[1] == 1001 and upstream.closed[1] == 1001


# Origins.

def test_origin_not_listed_gets_4403(make_harness):
    """--allow-origin: other origins (and none) are refused before Binance is contacted."""
    harness = make_harness(origins=["https://app.example.com"])
    assert harness.browser(origin="https://evil.example.com").closed[1] == 4403
    assert harness.browser().closed[1] == 4403
    assert harness.held == []
    allowed = harness.browser(origin="https://app.example.com")
    assert allowed.closed is None and len(harness.held) == 1


# Tickets.

def ticket_query(harness, target=UPSTREAM_URL, ttl=60, now=None, signed_target=None):
    now = harness.clock.seconds() if now is None else now
    ticket = mint_ticket(TOKEN, signed_target or target, ttl=ttl, now=now)
    from urllib.parse import urlencode

    return urlencode([("ticket", ticket), ("target", target)])


def test_a_ticket_opens_the_relay_without_the_key(make_harness):
    """A fresh ticket for exactly this target is as good as the key."""
    harness = make_harness()
    harness.clock.advance(1_700_000_000)
    browser = harness.browser(ticket_query(harness))
    harness.upstream()
    assert browser.opened and browser.closed is None


@pytest.mark.parametrize(
    "case", ["expired", "too_long", "wrong_target", "tampered", "garbage", "unicode_digits", "with_key"]
)
def test_bad_tickets_get_4401(make_harness, case):
    """Expired, longer than --ticket-ttl, for another target, tampered or malformed: 4401."""
    harness = make_harness()
    harness.clock.advance(1_700_000_000)
    now = harness.clock.seconds()
    query = {
        "expired": lambda: ticket_query(harness, now=now - 61),
        "too_long": lambda: ticket_query(harness, ttl=3600),
        "wrong_target": lambda: ticket_query(harness, signed_target=UPSTREAM_URL + "x"),
        "tampered": lambda: ticket_query(harness).replace("ticket=17", "ticket=18"),
        "garbage": lambda: "ticket=abc&target=" + UPSTREAM_URL,
        # "²" is a digit to str.isdigit, not to int()
        "unicode_digits": lambda: "ticket=%C2%B2.x&target=" + UPSTREAM_URL,
        "with_key": lambda: ticket_query(harness) + "&key=" + TOKEN,
    }[case]()
    assert harness.browser(query).closed[1] == 4401
    assert harness.held == []


# Health and metrics, on the same port.

def test_healthz_reports_connections_and_503_while_stopping(make_harness):
    """200 with counts (this request's own connection included); 503 once the service stops."""
    from chatrelay.service import RelayService

    harness = make_harness()
    status = StatusPages(harness.factory)
    status.install(harness.factory.routes)
    service = RelayService(harness.clock, harness.factory, status)
    service.startService()
    harness.browser()
    harness.upstream()
    code, body = get(harness, "/healthz")
    assert code == 200
    assert json.loads(body) == {"status": "ok", "connections": 2, "pairs": 1}
    service.stopService()
    code, body = get(harness, "/chat-relay/healthz")
    assert code == 503 and json.loads(body)["status"] == "stopping"


def test_metrics_count_handshakes_closes_and_traffic(make_harness):
    """Prometheus text: pairs, handshakes by outcome, closes by side and code, bytes each way."""
    harness = make_harness()
    StatusPages(harness.factory).install(harness.factory.routes)
    harness.browser(relay_query(key="wrong"))
    browser = harness.browser()
    upstream = harness.upstream()
    browser.sendMessage(b"12345")
    harness.flush()
    text = get(harness, "/metrics")[1].decode()
    assert "chatrelay_open_pairs 1.0" in text
    assert "chatrelay_connections 2.0" in text
    assert 'chatrelay_handshakes_total{code="4401",outcome="bad_key"} 1.0' in text
    assert 'chatrelay_handshakes_total{code="101",outcome="relayed"} 1.0' in text
    assert 'chatrelay_relayed_bytes_total{direction="browser_to_upstream"} 5.0' in text
    assert "chatrelay_upstream_connect_seconds_count 1.0" in text
    upstream.sendCloseFrame(4001, b"x")
    harness.flush()
    text = get(harness, "/metrics")[1].decode()
    assert 'chatrelay_closes_total{code="4xxx",side="upstream"} 1.0' in text
    assert 'chatrelay_closes_total{code="4xxx",side="browser"} 1.0' in text
    assert 'chatrelay_closes_total{code="4401",side="browser"} 1.0' in text
    assert "chatrelay_open_pairs 0.0" in text
    assert 'chatrelay_relayed_bytes_total{direction="browser_to_upstream"} 5.0' in text


def test_metrics_count_every_kind_of_refusal(make_harness):
    """Refusals with the relay's own codes and with standard ones (1013, 1014, 1001) alike."""
    harness = make_harness(limits=Limits(max_connections=1))
    StatusPages(harness.factory).install(harness.factory.routes)
    harness.browser(relay_query(target="http://upstream.test/chat/x"))
    refused_upstream = harness.browser()
    harness.refuse_upstream(error.ConnectionRefusedError())
    kept = harness.browser()
    harness.browser()
    harness.factory.shut_down()
    harness.flush()
    assert (refused_upstream.closed[1], kept.closed[1]) == (1014, 1001)
    text = get(harness, "/metrics")[1].decode()
    for code, outcome in (("4400", "bad_target"), ("1014", "upstream_failed"), ("1013", "over_capacity"),
                          ("1001", "shutdown")):
        assert f'chatrelay_handshakes_total{{code="{code}",outcome="{outcome}"}} 1.0' in text


@pytest.mark.parametrize("code, label", [
    (None, "None"), (1000, "1000"), (1006, "1006"), (1014, "1014"), (4401, "4401"),
    (3000, "3xxx"), (3999, "3xxx"), (4000, "4xxx"), (4999, "4xxx"),
])
def test_close_code_labels_are_bounded(code, label):
    """Peers choose application close codes: 2,000 of them would be 2,000 time series."""
    assert metric_label(code) == label


def test_metrics_refused_outside_metrics_allow(make_harness):
    """/metrics only for --metrics-allow addresses, resolved through trusted proxies."""
    harness = make_harness(clients=ClientAddresses(["127.0.0.1"]))
    StatusPages(harness.factory, ["127.0.0.1"]).install(harness.factory.routes)
    assert get(harness, "/metrics", peer="192.0.2.1")[0] == 403
    assert get(harness, "/metrics", peer="127.0.0.1", headers="X-Forwarded-For: 198.51.100.1\r\n")[0] == 403
    assert get(harness, "/metrics", peer="127.0.0.1")[0] == 200


def test_unknown_plain_paths_get_404_and_other_methods_405(make_harness):
    """Plain HTTP elsewhere is a 404; only GET and HEAD are served."""
    harness = make_harness()
    assert get(harness, "/chat-relay/")[0] == 404
    client = harness.raw()
    client.transport.write(b"POST /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    harness.flush()
    assert bytes(client.received).startswith(b"HTTP/1.1 405")
