"""Opening the upstream leg: TCP, verified TLS and the WebSocket handshake, within one deadline."""

import re
import weakref

from OpenSSL import SSL
from service_identity import VerificationError
from zope.interface import implementer

from twisted.internet import defer, error, ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator


class UpstreamFailure(Exception):
    """The upstream leg could not be opened; `reason` is safe to show the browser."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


@implementer(IOpenSSLTrustRoot)
class PlatformTrustPlus:
    """The platform's trusted CAs plus the certificates of an extra PEM bundle."""

    def __init__(self, certificates=()):
        self.certificates = tuple(certificates)

    @classmethod
    def from_pem_file(cls, path):
        """Trust every certificate in the PEM bundle at `path`, as well as the platform's."""
        with open(path, "rb") as pem:
            blocks = re.findall(
                rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem.read(), re.DOTALL
            )
        if not blocks:
            raise ValueError(f"no certificate in {path}")
        return cls(ssl.Certificate.loadPEM(block).original for block in blocks)

    def _addCACertsToContext(self, context):
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for certificate in self.certificates:
            store.add_cert(certificate)


# How long sessions descending from one full handshake are resumed: what that handshake verified
# (the certificate's validity, chain and name) is taken on trust no longer than this.
TLS_SESSION_MAX_AGE = 3600.0


@implementer(IOpenSSLClientConnectionCreator)
class ResumingTLS:
    """Client TLS to one upstream address that resumes the TLS session of the last leg opened.

    A full TLS handshake verifies the server's certificate chain and its name, and costs the
    relay more CPU than the rest of the connection together. A resumed one verifies nothing:
    it proves the server holds the session made by an earlier handshake with this address, one
    that did verify. Each connection starts a TLS connection of its own (ClientTLSOptions) and
    offers the session, if there is one and its full handshake was at most `max_age` ago; a
    server that declines it gets a full handshake, verified as always.

    A session is shared by the connections that resume it: should the leg it came from end
    without TLS's close_notify (the upstream dropping TCP without one), OpenSSL marks it not to
    be resumed, and the next connections make full handshakes until one of them opens and its
    session is kept. Twisted's client TLS sends no session ticket extension (OP_NO_TICKET), so
    a TLS 1.2 server resumes only from a session-ID cache of its own; TLS 1.3 uses tickets.
    """

    def __init__(self, options, now, max_age=TLS_SESSION_MAX_AGE):
        self.options = options
        self.now = now  # the reactor's clock (reactor.seconds)
        self.max_age = max_age
        self.session = None
        self._verified_at = None  # when the full handshake `session` descends from was made
        # TLS transport: (its OpenSSL connection, the _verified_at of the session it was offered)
        self._connections = weakref.WeakKeyDictionary()

    def clientConnectionForTLS(self, tlsProtocol):
        """IOpenSSLClientConnectionCreator API."""
        connection = self.options.clientConnectionForTLS(tlsProtocol)
        offered = None
        if self.session is not None and self.now() - self._verified_at < self.max_age:
            connection.set_session(self.session)
            offered = self._verified_at
        self._connections[tlsProtocol] = (connection, offered)
        return connection

    def keep_session(self, transport):
        """A leg on `transport` (a TLS transport made here) opened: its session, verified and with
        the server's tickets (they come before the WebSocket handshake's answer), is the one to
        resume from now on."""
        made = self._connections.pop(transport, None)
        if made is None:  # not a TLS transport made here: nothing to resume from
            return
        connection, offered = made
        # Offered a session, it may have resumed it (pyOpenSSL cannot tell): it counts as
        # verified when that session's full handshake was, which at worst is too early.
        self._verified_at = self.now() if offered is None else offered
        self.session = connection.get_session()

    def forget_session(self):
        """A leg's TLS failed: the next connection starts afresh."""
        self.session = None


def endpoint_for(reactor, target, tls):
    """The client endpoint for a target (`tls`: its ResumingTLS, for a wss:// target): every full
    TLS handshake verifies the certificate and the host name.

    It has no timeout of its own: the UpstreamAttempt's one timer bounds the whole attempt,
    connecting included (a second timer per connection would only race it).
    """
    if isIPAddress(target.host):  # no name to resolve: no resolver thread per connection
        endpoint = TCP4ClientEndpoint(reactor, target.host, target.port, timeout=None)
    elif isIPv6Address(target.host):
        endpoint = TCP6ClientEndpoint(reactor, target.host, target.port, timeout=None)
    else:
        endpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=None)
    if target.secure:
        endpoint = wrapClientTLS(tls, endpoint)
    return endpoint


class UpstreamEndpoints:
    """The client endpoint and TLS of each upstream address, made once and then reused.

    An endpoint only says where and how to connect, and each `connect` is a new connection;
    making a HostnameEndpoint IDNA-encodes its name. Making a wss:// address's TLS options reads
    the platform's CA bundle into a new OpenSSL context: milliseconds during which the reactor,
    and so every relayed pair, would wait. Both were once done for every connection to Binance.
    """

    def __init__(self, reactor, trust_root, max_endpoints=64):
        self.reactor = reactor
        self.trust_root = trust_root
        self.max_endpoints = max_endpoints
        self._endpoints = {}

    def for_target(self, target):
        """`target`'s endpoint (see endpoint_for) and ResumingTLS (None for a ws:// target)."""
        key = (target.host, target.port, target.secure)
        found = self._endpoints.get(key)
        if found is None:
            if len(self._endpoints) >= self.max_endpoints:  # allowlists rarely name this many
                self._endpoints.clear()
            sessions = None
            if target.secure:
                options = ssl.optionsForClientTLS(target.host, trustRoot=self.trust_root)
                sessions = ResumingTLS(options, self.reactor.seconds)
            found = self._endpoints[key] = (endpoint_for(self.reactor, target, sessions), sessions)
        return found


_UPGRADE_STATUS = re.compile(r"upgrade failed \[(\d{3})\]")


def describe_connect_failure(failure):
    """Why TCP did not connect, in words safe for the browser."""
    if failure.check(error.ConnectionRefusedError):
        return "upstream refused the connection"
    if failure.check(error.DNSLookupError):
        return "upstream host not found"
    if failure.check(error.TimeoutError, defer.CancelledError):
        return "upstream connect timed out"
    return "upstream unreachable"


def describe_handshake_failure(lost_reason, not_clean_reason):
    """Why a connected upstream closed before its WebSocket opened, in words safe for the browser."""
    if isinstance(lost_reason, VerificationError):
        return "upstream TLS hostname mismatch"
    if isinstance(lost_reason, SSL.Error):
        if "certificate verify failed" in str(lost_reason):
            return "upstream TLS certificate not trusted"
        return "upstream TLS handshake failed"
    status = _UPGRADE_STATUS.search(not_clean_reason or "")
    if status:
        return f"upstream refused the WebSocket handshake (HTTP {status.group(1)})"
    return "upstream closed during the handshake"


class UpstreamAttempt:
    """One attempt to open an upstream leg; `result` fires with the open leg or UpstreamFailure."""

    def __init__(self, reactor, endpoint, factory, timeout, tls_sessions=None):
        self.result = defer.Deferred(canceller=self._cancel)
        self._tls_sessions = tls_sessions  # the endpoint's ResumingTLS, for a wss:// target
        self._leg = None
        self._timed_out = False
        self._cancelled = False
        factory.attempt = self
        self._timer = reactor.callLater(timeout, self._time_out)
        self._connecting = endpoint.connect(factory)
        self._connecting.addCallbacks(self._connected, self._connect_failed)

    def opened(self, leg):
        """The leg completed its WebSocket handshake."""
        self._leg = None  # from here on, aborting it is the relay's business, not the attempt's
        if self._tls_sessions is not None:
            self._tls_sessions.keep_session(leg.transport)
        if not self.result.called:
            self._stop_timer()
            self.result.callback(leg)

    def closed_before_open(self, lost_reason, not_clean_reason):
        """The leg connected but went away before its handshake completed."""
        if self._tls_sessions is not None and isinstance(lost_reason, (SSL.Error, VerificationError)):
            self._tls_sessions.forget_session()
        if self._timed_out:
            self._fail("upstream timed out")
        else:
            self._fail(describe_handshake_failure(lost_reason, not_clean_reason))

    def _connected(self, leg):
        self._connecting = None
        self._leg = leg

    def _connect_failed(self, failure):
        self._connecting = None
        self._fail("upstream connect timed out" if self._timed_out else describe_connect_failure(failure))

    def _cancel(self, result):
        # Whoever cancels (a browser gone, a shutdown) gets CancelledError, not a failure.
        self._cancelled = True
        self._stop_timer()
        self._abort()

    def _time_out(self):
        self._timer = None
        self._timed_out = True
        self._abort()

    def _abort(self):
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._leg is not None and self._leg.transport is not None:
            self._leg.transport.abortConnection()

    def _fail(self, reason):
        self._stop_timer()
        if not self.result.called and not self._cancelled:
            self.result.errback(UpstreamFailure(reason))

    def _stop_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
