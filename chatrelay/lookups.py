"""Upstream host name lookups: one in flight per name, each answer remembered for a while.

Twisted resolves names with getaddrinfo in the reactor's thread pool, and cannot cancel a
lookup. Without sharing, every browser starts its own: with a slow resolver, lookups for
browsers that already left fill the pool's ten threads, and new browsers queue behind them.
Shared, there is one lookup per name at a time (per port would let `host:*` targets undo
it), however many browsers wait for it; remembered, a working resolver costs no thread hop
per connection.
"""

import attr
from zope.interface import implementer

from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.logger import Logger

log = Logger(namespace="chatrelay.lookups")


@implementer(IHostnameResolver)
class SharedLookups:
    """An IHostnameResolver over `resolver` that shares lookups in flight and keeps answers
    for `ttl` seconds (0: keep none); a failed lookup (no address) is not kept. A lookup
    still unanswered after `stale` seconds is no longer joined: the next caller starts another.
    """

    def __init__(self, clock, resolver, ttl=30.0, stale=30.0, max_names=256):
        self.clock = clock
        self.resolver = resolver
        self.ttl = ttl
        self.stale = stale
        self.max_names = max_names
        self._answers = {}  # key: (expiry, addresses)
        self._pending = {}  # key: the _Lookup in flight

    def resolveHostName(
        self, resolutionReceiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"
    ):
        """IHostnameResolver API."""
        key = (hostName, None if addressTypes is None else frozenset(addressTypes), transportSemantics)
        waiter = _Waiter(resolutionReceiver, portNumber)
        resolution = _Resolution(hostName, waiter)
        resolutionReceiver.resolutionBegan(resolution)
        now = self.clock.seconds()
        answer = self._answers.get(key)
        if answer is not None:
            expiry, addresses = answer
            if now < expiry:
                waiter.deliver(addresses)
                return resolution
            del self._answers[key]
        lookup = self._pending.get(key)
        if lookup is None or now >= lookup.started + self.stale:
            lookup = self._pending[key] = _Lookup(self, key, now)
            lookup.waiters.append(waiter)
            resolution.lookup = lookup
            try:
                self.resolver.resolveHostName(lookup, hostName, 0, addressTypes, transportSemantics)
            except Exception:
                log.failure("looking up {name} failed", name=hostName)
                lookup.resolutionComplete()  # no address: the caller reports the name not found
        else:
            lookup.waiters.append(waiter)
            resolution.lookup = lookup
        return resolution

    def _answered(self, lookup, addresses):
        if self._pending.get(lookup.key) is lookup:
            del self._pending[lookup.key]
        if addresses and self.ttl > 0:
            if len(self._answers) >= self.max_names:  # allowlists name a handful of hosts
                self._answers.clear()
            self._answers[lookup.key] = (self.clock.seconds() + self.ttl, addresses)
        waiters, lookup.waiters = lookup.waiters, []
        for waiter in waiters:
            waiter.deliver(addresses)


@implementer(IResolutionReceiver)
class _Lookup:
    """One lookup in flight for SharedLookups, and the callers waiting for it."""

    def __init__(self, lookups, key, started):
        self.lookups = lookups
        self.key = key
        self.started = started
        self.waiters = []
        self._addresses = []
        self._done = False

    def resolutionBegan(self, resolutionInProgress):
        """IResolutionReceiver API."""

    def addressResolved(self, address):
        """IResolutionReceiver API."""
        self._addresses.append(address)

    def resolutionComplete(self):
        """IResolutionReceiver API."""
        if not self._done:
            self._done = True
            self.lookups._answered(self, tuple(self._addresses))


class _Waiter:
    """One caller of SharedLookups: its receiver and the port it asked for."""

    def __init__(self, receiver, port):
        self.receiver = receiver
        self.port = port

    def deliver(self, addresses):
        """Give the receiver `addresses` (looked up for port 0) with its own port."""
        try:
            for address in addresses:
                if hasattr(address, "port"):
                    address = attr.evolve(address, port=self.port)
                self.receiver.addressResolved(address)
            self.receiver.resolutionComplete()
        except Exception:  # one waiter's failure must not keep the answer from the others
            log.failure("a host name lookup's receiver failed")


@implementer(IHostResolution)
class _Resolution:
    """One caller's view of a (possibly shared) lookup."""

    lookup = None

    def __init__(self, name, waiter):
        self.name = name
        self._waiter = waiter

    def cancel(self):
        """IHostResolution API: the shared lookup goes on; this caller no longer waits for it."""
        if self.lookup is not None and self._waiter in self.lookup.waiters:
            self.lookup.waiters.remove(self._waiter)
