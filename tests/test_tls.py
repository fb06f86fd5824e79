"""TLS on both legs, with certificates made for the test: direct `ssl:` listening, and an upstream
verified against --upstream-ca (a wrong host name or an unknown CA is a 1014), whose TLS sessions
are resumed."""

import json
from types import SimpleNamespace

import pytest
import pytest_twisted

from OpenSSL import SSL
from OpenSSL.SSL import _lib as openssl_lib
from zope.interface import implementer

from twisted.internet import defer, ssl
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.testing import MemoryReactorClock

from chatrelay.fakebinance import FakeBinance
from chatrelay.targets import parse_target
from chatrelay.upstream import (
    PlatformTrustPlus,
    ResumingTLS,
    UpstreamAttempt,
    UpstreamEndpoints,
)
from tests.certs import CertificateAuthority
from tests.loopback import WAIT, open_browser, relay_url, start_relay


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority()
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    good = directory / "good"
    good.mkdir()
    ca.write_server_files(good, "localhost", "127.0.0.1")
    wrong = directory / "wrong"
    wrong.mkdir()
    ca.write_server_files(wrong, "other.test")
    return directory, ca


def tls_fake(reactor, server_dir):
    fake = FakeBinance(reactor)
    key, cert = server_dir / "key.pem", server_dir / "cert.pem"
    pytest_twisted.blockon(fake.listen(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"))
    return fake


def wss_target(fake):
    return fake.chat_url().replace("ws://127.0.0.1", "wss://localhost")


@pytest.fixture(scope="module")
def fakes(pki):
    from twisted.internet import reactor

    directory, _ = pki
    good, wrong = tls_fake(reactor, directory / "good"), tls_fake(reactor, directory / "wrong")
    yield good, wrong
    pytest_twisted.blockon(good.stop())
    pytest_twisted.blockon(wrong.stop())


@pytest.fixture
def relay_with_ca(pki, reactor):
    directory, _ = pki
    process = pytest_twisted.blockon(
        start_relay(reactor, "--allow-target", "wss://localhost:*/chat/",
                    "--upstream-ca", str(directory / "ca.pem"))
    )
    yield process
    process.kill()


@pytest_twisted.inlineCallbacks
def test_upstream_tls_verified_with_the_extra_ca(reactor, relay_with_ca, fakes):
    """With --upstream-ca the relay trusts the test CA and relays over wss."""
    good, _ = fakes
    factory = open_browser(reactor, relay_url(relay_with_ca.port, wss_target(good)))
    browser = yield factory.opened
    binance = yield good.next_connection()
    browser.sendMessage(json.dumps({"type": "text", "orderNo": "1", "content": "over TLS", "uuid": "u1"}).encode())
    echo, _ = yield browser.next_message()
    assert json.loads(echo)["content"] == "over TLS"
    binance.close(4000, "tls bye")
    assert (yield factory.closed) == (True, 4000, "tls bye")


def test_endpoints_and_tls_options_are_made_once_per_address(monkeypatch):
    """Making a host name's endpoint IDNA-encodes the name, and making TLS options reads the CA
    bundle (milliseconds of a blocked reactor): once per host, port and scheme."""
    made = []
    real = ssl.optionsForClientTLS

    def counting(host, trustRoot=None):
        made.append(host)
        return real(host, trustRoot=trustRoot)

    monkeypatch.setattr(ssl, "optionsForClientTLS", counting)
    endpoints = UpstreamEndpoints(MemoryReactorClock(), PlatformTrustPlus(), max_endpoints=3)
    wss = parse_target("wss://im.binance.com/chat/k?token=t")
    first = endpoints.for_target(wss)
    assert endpoints.for_target(parse_target("wss://im.binance.com:443/chat/other?token=u")) is first
    others = [endpoints.for_target(parse_target(url)) for url in (
        "wss://im.binance.com:8443/chat/k", "ws://im.binance.com:443/chat/k")]
    assert len({id(first), *map(id, others)}) == 3
    assert others[1][1] is None  # ws://: no TLS
    endpoints.for_target(parse_target("ws://127.0.0.1:9/chat/k"))  # over max_endpoints: starts again
    assert endpoints.for_target(wss) is not first
    assert made == ["im.binance.com", "im.binance.com", "im.binance.com"]


def session_resumed(leg):
    """Whether the TLS connection under a leg resumed an earlier session (pyOpenSSL has no public
    call for it: OpenSSL's own, through pyOpenSSL's bindings)."""
    return bool(openssl_lib.SSL_session_reused(leg.transport.getHandle()._ssl))


def ticket_issuing(server_dir):
    """Server TLS options for the certificate in `server_dir`, issuing session tickets under
    ticket keys of their own (as most TLS servers do; Twisted's own default issues none)."""
    key, cert = server_dir / "key.pem", server_dir / "cert.pem"
    server_cert = ssl.PrivateCertificate.loadPEM(cert.read_text() + key.read_text())
    return ssl.CertificateOptions(privateKey=server_cert.privateKey.original,
                                  certificate=server_cert.original, enableSessionTickets=True)


@implementer(IOpenSSLServerConnectionCreator)
class SwappableServerTLS:
    """Server TLS whose options a test may replace between connections."""

    def __init__(self, options):
        self.options = options

    def serverConnectionForTLS(self, tlsProtocol):
        """IOpenSSLServerConnectionCreator API."""
        return self.options.serverConnectionForTLS(tlsProtocol)


@pytest_twisted.inlineCallbacks
def test_upstream_tls_sessions_are_resumed(reactor, pki, relay_with_ca):
    """An upstream that issues session tickets gets its session resumed by the relay's next
    connection: no certificate chain to verify, and the pair relays as before."""
    directory, _ = pki
    fake = FakeBinance(reactor)
    yield fake.listen(SSL4ServerEndpoint(reactor, 0, ticket_issuing(directory / "good"), interface="127.0.0.1"))
    try:
        resumed = []
        for content in ("first", "second", "third"):
            factory = open_browser(reactor, relay_url(relay_with_ca.port, wss_target(fake)))
            browser = yield factory.opened
            binance = yield fake.next_connection().addTimeout(WAIT, reactor)
            resumed.append(session_resumed(binance))
            browser.sendMessage(json.dumps({"type": "text", "orderNo": "1", "content": content, "uuid": content}).encode())
            echo, _ = yield browser.next_message().addTimeout(WAIT, reactor)
            assert json.loads(echo)["content"] == content
            browser.sendClose(1000)
            assert (yield factory.closed)[1] == 1000
        assert resumed == [False, True, True]
    finally:
        yield fake.stop()


@pytest_twisted.inlineCallbacks
def test_a_server_that_cannot_resume_the_session_is_verified_again(reactor, pki, relay_with_ca):
    """At the address whose session the relay keeps, a server with another certificate, for
    another name, and ticket keys of its own cannot resume it: the full handshake checks the name,
    and the browser gets 1014. That failure makes the relay forget the session: back to the first
    server, which could resume it, the next connection makes a full handshake."""
    directory, _ = pki
    good = ticket_issuing(directory / "good")
    server = SwappableServerTLS(good)
    fake = FakeBinance(reactor)
    yield fake.listen(SSL4ServerEndpoint(reactor, 0, server, interface="127.0.0.1"))
    try:
        resumed = []
        for options in (good, good, ticket_issuing(directory / "wrong"), good):
            server.options = options
            factory = open_browser(reactor, relay_url(relay_with_ca.port, wss_target(fake)))
            browser = yield factory.opened
            if options is not good:
                assert (yield factory.closed) == (True, 1014, "upstream TLS hostname mismatch")
                continue
            binance = yield fake.next_connection().addTimeout(WAIT, reactor)
            resumed.append(session_resumed(binance))
            browser.sendClose(1000)  # a clean close: the session stays resumable
            assert (yield factory.closed)[1] == 1000
        assert resumed == [False, True, False]
    finally:
        yield fake.stop()


class RecordingConnection:
    """What ResumingTLS asks of an OpenSSL connection, recorded."""

    def __init__(self):
        self.offered = None  # the session ResumingTLS offered
        self.session = None  # the session the handshake ends with

    def set_session(self, session):
        """pyOpenSSL API: offer `session`."""
        self.offered = session

    def get_session(self):
        """pyOpenSSL API: the connection's session."""
        return self.session


class RecordingOptions:
    """ClientTLSOptions' one call, making RecordingConnections."""

    def clientConnectionForTLS(self, tlsProtocol):
        """IOpenSSLClientConnectionCreator API."""
        return RecordingConnection()


class TLSTransport:
    """Stands in for the TLSMemoryBIOProtocol of one upstream connection: the leg's transport."""

    def __init__(self, sessions):
        self.connection = sessions.clientConnectionForTLS(self)


class HeldEndpoint:
    """An endpoint whose connections never complete (the attempt's outcome is the test's)."""

    def connect(self, factory):
        """IStreamClientEndpoint API."""
        return defer.Deferred()


def test_the_session_of_the_last_leg_opened_is_offered_and_a_tls_failure_forgets_it():
    """A leg that opened gives its session to the next connections; one whose TLS failed makes
    the next start afresh, and one refused for another reason (an HTTP status) does not."""
    clock = MemoryReactorClock()
    sessions = ResumingTLS(RecordingOptions(), clock.seconds)

    def attempt():
        return UpstreamAttempt(clock, HeldEndpoint(), SimpleNamespace(), 10, tls_sessions=sessions)

    first = TLSTransport(sessions)
    assert first.connection.offered is None
    first.connection.session = "session-1"
    attempt().opened(SimpleNamespace(transport=first))
    assert TLSTransport(sessions).connection.offered == "session-1"
    elsewhere = TLSTransport(ResumingTLS(RecordingOptions(), clock.seconds))
    elsewhere.connection.session = "session-elsewhere"
    sessions.keep_session(elsewhere)  # a transport it did not make: ignored
    assert TLSTransport(sessions).connection.offered == "session-1"
    for lost_reason, offered in ((None, "session-1"), (SSL.Error("handshake failure"), None)):
        failed = attempt()
        failed.result.addErrback(lambda failure: None)
        failed.closed_before_open(lost_reason, "WebSocket opening handshake failed [401]")
        assert TLSTransport(sessions).connection.offered == offered


def test_a_session_is_offered_for_an_hour_after_the_full_handshake_it_descends_from():
    """Resuming makes a new session, but verifies nothing: an hour after the last full handshake
    the next connection makes one again, and its session counts from then."""
    clock = MemoryReactorClock()
    sessions = ResumingTLS(RecordingOptions(), clock.seconds, max_age=3600)

    def opened(transport, session):
        transport.connection.session = session
        sessions.keep_session(transport)

    opened(TLSTransport(sessions), "full-1")
    clock.advance(3000)
    resumed = TLSTransport(sessions)
    assert resumed.connection.offered == "full-1"
    opened(resumed, "resumed-1")
    clock.advance(599)
    assert TLSTransport(sessions).connection.offered == "resumed-1"
    clock.advance(1)
    full = TLSTransport(sessions)
    assert full.connection.offered is None
    opened(full, "full-2")
    clock.advance(3599)
    assert TLSTransport(sessions).connection.offered == "full-2"


@pytest_twisted.inlineCallbacks
def test_reused_tls_options_still_check_each_connection(reactor, relay_with_ca, fakes):
    """Connections to one address share its TLS options, and each full handshake is verified on
    its own: a good certificate, then one from the right CA for another name (another port of
    the same host), then the good one again (a server issuing no session tickets)."""
    good, wrong = fakes
    for fake in (good, wrong, good):
        factory = open_browser(reactor, relay_url(relay_with_ca.port, wss_target(fake)))
        browser = yield factory.opened
        if fake is good:
            yield fake.next_connection()
            browser.sendClose(1000)
            assert (yield factory.closed)[1] == 1000
        else:
            assert (yield factory.closed) == (True, 1014, "upstream TLS hostname mismatch")


@pytest_twisted.inlineCallbacks
def test_upstream_with_wrong_host_name_gives_1014(reactor, relay_with_ca, fakes):
    """A certificate from the right CA for another name is refused: 1014."""
    _, wrong = fakes
    factory = open_browser(reactor, relay_url(relay_with_ca.port, wss_target(wrong)))
    yield factory.opened
    assert (yield factory.closed) == (True, 1014, "upstream TLS hostname mismatch")


@pytest_twisted.inlineCallbacks
def test_upstream_with_unknown_ca_gives_1014(reactor, fakes):
    """Without --upstream-ca the test CA is unknown: 1014, and no message reaches Binance."""
    good, _ = fakes
    relay = yield start_relay(reactor, "--allow-target", "wss://localhost:*/chat/")
    try:
        factory = open_browser(reactor, relay_url(relay.port, wss_target(good)))
        yield factory.opened
        assert (yield factory.closed) == (True, 1014, "upstream TLS certificate not trusted")
    finally:
        relay.kill()


@pytest_twisted.inlineCallbacks
def test_direct_tls_listening(reactor, pki, fakes):
    """--listen ssl:... serves wss:// itself, with the certificate given."""
    directory, ca = pki
    good, _ = fakes
    key, cert = directory / "good" / "key.pem", directory / "good" / "cert.pem"
    relay = yield start_relay(
        reactor, "--listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--allow-target", "wss://localhost:*/chat/", "--upstream-ca", str(directory / "ca.pem"),
    )
    try:
        match = yield relay.wait_for(rb"RelayServerFactory \(TLS\) starting on (\d+)").addTimeout(15, reactor)
        tls_port = int(match.group(1))
        options = ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(ca.cert_pem))
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", tls_port))
        url = relay_url(tls_port, wss_target(good), base="wss://localhost")
        factory = open_browser(reactor, url, endpoint=endpoint)
        browser = yield factory.opened
        yield good.next_connection()
        browser.sendClose(1000)
        assert (yield factory.closed)[:2] == (True, 1000)
    finally:
        relay.kill()
