"""Upstream host name lookups: one in flight per name, each answer remembered for a while.

Twisted resolves names with getaddrinfo in the reactor's thread pool, and cannot cancel a
lookup. Without sharing, every browser starts its own: with a slow resolver, lookups for
browsers that already left fill the pool's ten threads, and new browsers queue behind them.
Shared, there is at most one lookup per name, however many browsers wait for it; remembered,
a working resolver costs no thread hop per connection.
"""

from zope.interface import implementer

from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.logger import Logger

log = Logger(namespace="chatrelay.lookups")


@implementer(IHostResolution)
class _Resolution:
    """One caller's view of a (possibly shared) lookup."""

    def __init__(self, name):
        self.name = name

    def cancel(self):
        """IHostResolution API: the shared lookup goes on; its answer reaches callers still waiting."""


@implementer(IHostnameResolver)
class SharedLookups:
    """An IHostnameResolver over `resolver` that shares lookups in flight and keeps answers
    for `ttl` seconds (0: keep none); a failed lookup (no address) is not kept."""

    def __init__(self, clock, resolver, ttl=30.0, max_names=256):
        self.clock = clock
        self.resolver = resolver
        self.ttl = ttl
        self.max_names = max_names
        self._answers = {}  # key: (expiry, addresses)
        self._waiting = {}  # key: [receivers]

    def resolveHostName(
        self, resolutionReceiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"
    ):
        """IHostnameResolver API."""
        types = None if addressTypes is None else frozenset(addressTypes)
        key = (hostName, portNumber, types, transportSemantics)
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        answer = self._answers.get(key)
        if answer is not None:
            expiry, addresses = answer
            if expiry > self.clock.seconds():
                _deliver(resolutionReceiver, addresses)
                return resolution
            del self._answers[key]
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = [resolutionReceiver]
            self.resolver.resolveHostName(
                _Answer(self, key), hostName, portNumber, addressTypes, transportSemantics
            )
        else:
            waiting.append(resolutionReceiver)
        return resolution

    def _answered(self, key, addresses):
        waiting = self._waiting.pop(key, ())
        if addresses and self.ttl > 0:
            if len(self._answers) >= self.max_names:  # allowlists name a handful of hosts
                self._answers.clear()
            self._answers[key] = (self.clock.seconds() + self.ttl, addresses)
        for receiver in waiting:
            _deliver(receiver, addresses)


@implementer(IResolutionReceiver)
class _Answer:
    """Collects the addresses of one lookup for SharedLookups."""

    def __init__(self, lookups, key):
        self.lookups = lookups
        self.key = key
        self.addresses = []

    def resolutionBegan(self, resolutionInProgress):
        """IResolutionReceiver API."""

    def addressResolved(self, address):
        """IResolutionReceiver API."""
        self.addresses.append(address)

    def resolutionComplete(self):
        """IResolutionReceiver API."""
        self.lookups._answered(self.key, tuple(self.addresses))


def _deliver(receiver, addresses):
    # One waiter's failure must not keep the answer from the others.
    try:
        for address in addresses:
            receiver.addressResolved(address)
        receiver.resolutionComplete()
    except Exception:
        log.failure("a host name lookup's receiver failed")
