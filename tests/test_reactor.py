"""chatrelay's reactor (`twistd --reactor=chatrelay`): Twisted's own reactor test suites run on
it, and its event dispatch keeps the epoll reactor's error handling."""

import select
import socket

import pytest
from zope.interface import implementer

from twisted.internet import protocol, tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.test import (
    test_core, test_fdset, test_socket, test_tcp, test_threads, test_time, test_tls, test_unix,
)
from twisted.python import log
from twisted.trial.unittest import SynchronousTestCase

from chatrelay.reactor import RelayReactor

RELAY_REACTOR = "chatrelay.reactor.RelayReactor"


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path, monkeypatch):
    """Twisted's suites make their files (Unix sockets among them) with TestCase.mktemp, under
    the working directory, which trial sets and pytest does not."""
    monkeypatch.chdir(tmp_path)

# Twisted's reactor conformance suites, as it runs them on its own reactors: TCP, TLS and UNIX
# socket transports (`--listen unix:...`), ports, connectors, adoption, abort, producers,
# readers/writers bookkeeping, system events, timers, threads (the resolver's callFromThread).
_BUILDERS = (
    test_tcp.TCP4ClientTestsBuilder, test_tcp.TCP6ClientTestsBuilder, test_tcp.TCPPortTestsBuilder,
    test_tcp.TCPFDPortTestsBuilder, test_tcp.TCPConnectionTestsBuilder, test_tcp.TCP4ConnectorTestsBuilder,
    test_tcp.TCPTransportTestsBuilder, test_tcp.AdoptStreamConnectionTestsBuilder, test_tcp.AbortConnectionTests,
    test_tls.SSLClientTestsMixin, test_tls.StartTLSClientTestsMixin, test_tls.TLSPortTestsBuilder,
    test_tls.AbortSSLConnectionTests, test_socket.IReactorSocketVerificationTestsBuilder,
    test_fdset.ReactorFDSetTestsBuilder, test_core.SystemEventTestsBuilder, test_time.TimeTestsBuilder,
    test_threads.ThreadTestsBuilder,
    test_unix.UNIXTestsBuilder, test_unix.UNIXPortTestsBuilder, test_unix.UNIXFDPortTestsBuilder,
    test_unix.UNIXAdoptStreamConnectionTestsBuilder, test_unix.UnixClientTestsBuilder,
)
# Where RelayReactor differs from EPollReactor, on purpose or as EPollReactor itself does.
_DIFFERENCES = {
    "test_logPrefix": "by design: no legacy log context (the `system` of twisted.python.log) per I/O event",
    "test_lostFileDescriptor": "as for EPollReactor, which Twisted skips by its class name: epoll drops a "
    "closed descriptor silently",
}


def _skipped(reason):
    def test(self):
        """Skipped: see `skip`."""

    test.skip = reason
    return test


for _builder in _BUILDERS:
    _attributes = {name: _skipped(reason) for name, reason in _DIFFERENCES.items() if hasattr(_builder, name)}
    _attributes.update(_reactors=[RELAY_REACTOR], __module__=__name__)
    _on_relay_reactor = type(_builder.__name__, (_builder,), _attributes)
    for _name, _case in _on_relay_reactor.makeTestCaseClasses().items():
        _case.__module__ = __name__
        globals()[_name] = _case
del _builder, _attributes, _on_relay_reactor, _name, _case


class Reader(protocol.Protocol):
    """Records what it reads and how its connection ends; raises on `boom`."""

    def __init__(self):
        self.data = b""
        self.lost = None

    def dataReceived(self, data):
        self.data += data
        if b"boom" in data:
            raise RuntimeError("a bug in a protocol")

    def connectionLost(self, reason):
        self.lost = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseableReader(Reader):
    """A Reader that supports half-close, and ends its connection by raising ConnectionDone."""

    read_lost = False

    def dataReceived(self, data):
        raise ConnectionDone()

    def readConnectionLost(self):
        self.read_lost = True

    def writeConnectionLost(self):
        """Twisted API."""


class DispatchTests(SynchronousTestCase):
    """RelayReactor.doPoll: the epoll reactor's dispatch, minus the legacy log context."""

    def setUp(self):
        self.reactor = RelayReactor()
        self.addCleanup(self._close)

    def _close(self):
        for selectable in self.reactor.removeAll():
            selectable.socket.close()
        self.reactor._poller.close()

    def connected_reader(self, reader_class=Reader):
        """A reader on a loopback TCP connection, registered with the reactor; its transport;
        and the peer socket to write to it."""
        with socket.create_server(("127.0.0.1", 0)) as listener:
            theirs = socket.create_connection(listener.getsockname(), timeout=5)
            ours, _ = listener.accept()
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        reader = reader_class()
        transport = tcp.Connection(ours, reader, self.reactor)
        transport.connected = True
        reader.makeConnection(transport)
        transport.startReading()
        return reader, transport, theirs

    def test_a_readable_connection_is_read_without_the_legacy_log_context(self):
        """A plain readable event reaches the protocol; `callWithLogger` is not on the path."""
        self.patch(log, "callWithLogger", lambda *a, **kw: self.fail("callWithLogger called"))
        reader, _, peer = self.connected_reader()
        peer.sendall(b"hello")
        self.reactor.doPoll(1)
        self.assertEqual(reader.data, b"hello")

    def test_a_protocol_error_is_logged_and_closes_only_its_connection(self):
        """An exception in one protocol's dataReceived is logged and loses that connection with
        the exception as the reason; another connection ready in the same poll is still read."""
        failing, _, failing_peer = self.connected_reader()
        healthy, _, healthy_peer = self.connected_reader()
        failing_peer.sendall(b"boom")
        healthy_peer.sendall(b"fine")
        for _ in range(3):  # bounded: both events usually arrive in one poll
            if healthy.data and failing.lost is not None:
                break
            self.reactor.doPoll(1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIsInstance(failing.lost.value, RuntimeError)
        self.assertEqual(healthy.data, b"fine")
        self.assertIsNone(healthy.lost)

    def test_a_peers_fin_ends_the_connection_cleanly(self):
        """The peer's FIN (a plain readable event, then a read of b'') loses the connection
        with ConnectionDone."""
        reader, _, peer = self.connected_reader()
        peer.shutdown(socket.SHUT_WR)
        self.reactor.doPoll(1)
        self.assertIsInstance(reader.lost.value, ConnectionDone)

    def test_connection_done_raised_in_a_read_loses_the_whole_connection(self):
        """As in the epoll reactor: a half-closeable protocol raising ConnectionDone from
        dataReceived loses its connection, not only the read side."""
        reader, _, peer = self.connected_reader(HalfCloseableReader)
        peer.sendall(b"done")
        self.reactor.doPoll(1)
        self.flushLoggedErrors(ConnectionDone)
        self.assertIsInstance(reader.lost.value, ConnectionDone)
        self.assertFalse(reader.read_lost)

    def test_other_events_take_the_epoll_reactors_path(self):
        """An event that is not a plain read (here: writable) goes through _doReadOrWrite."""
        seen = []
        self.patch(self.reactor, "_doReadOrWrite", lambda selectable, fd, event: seen.append(event))
        reader, transport, _ = self.connected_reader()
        transport.startWriting()
        self.reactor.doPoll(1)
        self.assertTrue(seen and all(event & select.EPOLLOUT for event in seen))
