"""Upstream host name lookups: shared while in flight, remembered for --dns-ttl."""

import socket
import threading

import pytest
import pytest_twisted
from zope.interface import implementer

from twisted.internet import error, protocol
from twisted.internet._resolver import GAIResolver
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorPluggableNameResolver
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from chatrelay.lookups import SharedLookups
from chatrelay.tap import Options, makeService

WAIT = 10  # seconds any wait in these tests may take


class PendingResolver:
    """An IHostnameResolver whose lookups wait for the test to answer them."""

    def __init__(self):
        self.lookups = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        self.lookups.append((receiver, hostName, portNumber))
        receiver.resolutionBegan(None)

    def answer(self, index, *hosts):
        receiver, _name, port = self.lookups[index]
        for host in hosts:
            receiver.addressResolved(IPv4Address("TCP", host, port))
        receiver.resolutionComplete()


class Receiver:
    """Records what a lookup delivered; `complete` is None until it completes."""

    def __init__(self):
        self.began = None
        self.addresses = []
        self.ports = set()
        self.complete = None

    def resolutionBegan(self, resolution):
        self.began = resolution

    def addressResolved(self, address):
        self.addresses.append(address.host)
        self.ports.add(address.port)

    def resolutionComplete(self):
        self.complete = list(self.addresses)


@pytest.fixture
def lookups():
    return SharedLookups(Clock(), PendingResolver(), ttl=30.0)


def resolve(lookups, name="im.binance.com", port=443):
    receiver = Receiver()
    lookups.resolveHostName(receiver, name, port)
    return receiver


def test_browsers_waiting_for_one_name_share_one_lookup(lookups):
    """Fifty browsers arriving during a lookup start no second one, and all get its answer."""
    waiting = [resolve(lookups) for _ in range(50)]
    assert len(lookups.resolver.lookups) == 1
    assert all(receiver.began.name == "im.binance.com" and receiver.complete is None for receiver in waiting)
    lookups.resolver.answer(0, "203.0.113.5", "203.0.113.6")
    assert all(receiver.complete == ["203.0.113.5", "203.0.113.6"] for receiver in waiting)


def test_an_answer_is_reused_until_its_ttl_runs_out(lookups):
    """No thread hop per connection while the answer is fresh; a new lookup once it is not."""
    resolve(lookups)
    lookups.resolver.answer(0, "203.0.113.5")
    lookups.clock.advance(29.9)
    assert resolve(lookups).complete == ["203.0.113.5"]
    assert len(lookups.resolver.lookups) == 1
    lookups.clock.advance(0.2)
    late = resolve(lookups)
    assert late.complete is None and len(lookups.resolver.lookups) == 2
    lookups.resolver.answer(1, "203.0.113.7")
    assert late.complete == ["203.0.113.7"]


def test_a_failed_lookup_is_not_remembered(lookups):
    """No address (the name did not resolve): the next browser looks again."""
    first = resolve(lookups)
    lookups.resolver.answer(0)
    assert first.complete == []
    resolve(lookups)
    assert len(lookups.resolver.lookups) == 2


def test_ttl_zero_shares_lookups_in_flight_but_keeps_no_answer():
    """--dns-ttl 0: each connection after an answer looks up again."""
    lookups = SharedLookups(Clock(), PendingResolver(), ttl=0)
    first, second = resolve(lookups), resolve(lookups)
    lookups.resolver.answer(0, "203.0.113.5")
    assert first.complete == second.complete == ["203.0.113.5"]
    resolve(lookups)
    assert len(lookups.resolver.lookups) == 2


def test_names_are_looked_up_separately_ports_are_not(lookups):
    """One lookup per name: a target allowed on any port (`host:*`) cannot start one per port.
    Each caller gets the addresses with its own port."""
    at_443, other_name, at_8443 = (
        resolve(lookups, "a.example", 443), resolve(lookups, "b.example", 443), resolve(lookups, "a.example", 8443)
    )
    assert [(name, port) for _r, name, port in lookups.resolver.lookups] == [("a.example", 0), ("b.example", 0)]
    lookups.resolver.answer(0, "203.0.113.5")
    assert (at_443.complete, at_443.ports, at_8443.complete, at_8443.ports) == (
        ["203.0.113.5"], {443}, ["203.0.113.5"], {8443}
    )
    assert other_name.complete is None
    assert resolve(lookups, "a.example", 80).ports == {80}


def test_a_resolver_that_raises_fails_its_callers_and_not_the_next(lookups, log_events):
    """An exception from the resolver: the name is not found (1014 for the browser), it is
    logged, and the next browser gets a new lookup instead of waiting for nothing."""
    class Raising(PendingResolver):
        def resolveHostName(self, receiver, hostName, *args):
            super().resolveHostName(receiver, hostName, *args)
            if len(self.lookups) == 1:
                raise RuntimeError("resolver broken")

    lookups.resolver = Raising()
    first = resolve(lookups)
    assert first.complete == []
    assert [e["log_failure"].value.args for e in log_events if "log_failure" in e] == [("resolver broken",)]
    second = resolve(lookups)
    assert len(lookups.resolver.lookups) == 2
    lookups.resolver.answer(1, "203.0.113.5")
    assert second.complete == ["203.0.113.5"]


def test_a_lookup_that_never_answers_is_not_joined_for_ever(lookups):
    """After `stale` seconds without an answer, a new caller starts another lookup; the old
    one still answers its own callers, should it ever."""
    stuck = resolve(lookups)
    lookups.clock.advance(29)
    assert resolve(lookups).complete is None and len(lookups.resolver.lookups) == 1
    lookups.clock.advance(1)
    fresh = resolve(lookups)
    assert len(lookups.resolver.lookups) == 2
    lookups.resolver.answer(1, "203.0.113.6")
    assert fresh.complete == ["203.0.113.6"] and stuck.complete is None
    lookups.resolver.answer(0, "203.0.113.5")
    assert stuck.complete == ["203.0.113.5"]


def test_a_caller_that_cancels_gets_nothing_and_others_still_do(lookups):
    """A browser gone before the answer is no longer held by the lookup."""
    gone, staying = resolve(lookups), resolve(lookups)
    gone.began.cancel()
    lookups.resolver.answer(0, "203.0.113.5")
    assert (gone.complete, staying.complete) == (None, ["203.0.113.5"])


def test_remembered_names_are_bounded(lookups):
    """However many names resolve, at most max_names answers are kept."""
    lookups.max_names = 2
    for index, name in enumerate(["a.example", "b.example", "c.example"]):
        resolve(lookups, name)
        lookups.resolver.answer(index, "203.0.113.5")
    assert len(lookups._answers) <= 2


def test_a_failing_receiver_does_not_keep_the_answer_from_others(lookups, log_events):
    """One waiter raising is logged; the waiters after it still get their addresses."""

    class Broken(Receiver):
        def addressResolved(self, address):
            raise RuntimeError("boom")

    lookups.resolveHostName(Broken(), "im.binance.com", 443)
    after = resolve(lookups)
    lookups.resolver.answer(0, "203.0.113.5")
    assert after.complete == ["203.0.113.5"]
    assert [e["log_failure"].value.args for e in log_events if "log_failure" in e] == [("boom",)]


@pytest_twisted.inlineCallbacks
def test_lookups_for_browsers_that_left_do_not_hold_up_new_ones(reactor):
    """Through Twisted's own thread-pool resolver and HostnameEndpoint: twelve connections to
    a slow name, all given up (more than the pool's ten threads), then one more. One
    getaddrinfo runs, and the last connection connects as soon as it answers."""
    listening = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(protocol.Protocol)
    )
    port = listening.getHost().port
    calls = []
    release = threading.Event()

    def slow_getaddrinfo(host, port_number, family, socktype):
        calls.append(host)
        release.wait(WAIT)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port_number))]

    lookups = SharedLookups(reactor, GAIResolver(reactor, getaddrinfo=slow_getaddrinfo))
    previous = reactor.installNameResolver(lookups)
    client = protocol.Factory.forProtocol(protocol.Protocol)
    try:
        for _ in range(12):
            attempt = HostnameEndpoint(reactor, "slow.example", port, timeout=WAIT).connect(client)
            # HostnameEndpoint reports a cancelled lookup as a DNSLookupError.
            attempt.addErrback(lambda failure: failure.trap(error.DNSLookupError))
            attempt.cancel()
        last = HostnameEndpoint(reactor, "slow.example", port, timeout=WAIT).connect(client)
        last.addTimeout(WAIT, reactor)
        release.set()
        connected = yield last
        assert connected.transport.getPeer().port == port
        assert calls == ["slow.example"]
        connected.transport.loseConnection()
    finally:
        release.set()
        reactor.installNameResolver(previous)
        yield listening.stopListening()


@implementer(IReactorPluggableNameResolver)
class ResolvingMemoryReactor(MemoryReactorClock):
    """A memory reactor with a pluggable name resolver."""

    nameResolver = PendingResolver()
    resolver = "the legacy resolver"

    def installNameResolver(self, resolver):
        previous, self.nameResolver = self.nameResolver, resolver
        self.resolver = "a simplified " + type(resolver).__name__
        return previous


def test_the_service_shares_lookups_while_it_runs():
    """`twistd chatrelay --dns-ttl 5`: the reactor resolves through SharedLookups while the
    service runs, and through its own resolver again once it stops."""
    options = Options()
    options.environ = {"BINANCE_PROXY_TOKEN": "secret-token"}
    options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--dns-ttl", "5"])
    reactor = ResolvingMemoryReactor()
    original = reactor.nameResolver
    service = makeService(options, reactor=reactor)
    service.startService()
    try:
        assert isinstance(reactor.nameResolver, SharedLookups)
        assert (reactor.nameResolver.resolver, reactor.nameResolver.ttl) == (original, 5.0)
    finally:
        service.stopService()  # also gives the collector its settings back, whatever happened
    assert (reactor.nameResolver, reactor.resolver) == (original, "the legacy resolver")
