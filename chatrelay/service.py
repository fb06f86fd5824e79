"""The service twistd runs: listeners plus a graceful shutdown of every relayed connection."""

import signal

from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorPluggableNameResolver
from twisted.internet.task import deferLater
from twisted.logger import Logger

from chatrelay.lookups import SharedLookups

log = Logger(namespace="chatrelay.service")


class RelayService(MultiService):
    """Shares upstream host name lookups (answers kept `dns_ttl` seconds) and applies the
    `collector` settings (a collector.CollectorSettings) while running; stops listening, then
    closes every connection with 1001, waiting `grace` seconds at most."""

    def __init__(self, reactor, factory, status=None, grace=4.0, dns_ttl=30.0, collector=None):
        super().__init__()
        self.reactor = reactor
        self.factory = factory
        self.status = status
        self.grace = grace
        self.dns_ttl = dns_ttl
        self.collector = collector
        self.lookups = None
        self._legacy_resolver = None

    def startService(self):
        """IService API."""
        if IReactorPluggableNameResolver.providedBy(self.reactor):
            self.lookups = SharedLookups(self.reactor, self.reactor.nameResolver, ttl=self.dns_ttl)
            self._legacy_resolver = getattr(self.reactor, "resolver", None)
            self.reactor.installNameResolver(self.lookups)  # which also replaces reactor.resolver
        if self.collector is not None:
            self.collector.apply()
        super().startService()

    def stopService(self):
        """IService API."""
        if self.lookups is not None and self.reactor.nameResolver is self.lookups:
            self.reactor.installNameResolver(self.lookups.resolver)
            self.reactor.resolver = self._legacy_resolver
        self.lookups = None
        if self.status is not None:
            self.status.stopping = True
        stopped = super().stopService()
        stopped.addCallback(lambda _: self._close_connections())
        if self.collector is not None:
            # Once all are closed: a full collection during the closing burst would stall it.
            stopped.addBoth(self._restore_collector)
        stopped.addBoth(self._handled_sigterm)
        return stopped

    def _restore_collector(self, result):
        self.collector.restore()
        return result

    def _handled_sigterm(self, result):
        # twistd re-raises the signal that stopped the reactor so the exit status shows it;
        # a SIGTERM that ended in a graceful shutdown is a success, and the contract is exit 0.
        if getattr(self.reactor, "_exitSignal", None) == signal.SIGTERM:
            self.reactor._exitSignal = None
        return result

    def _close_connections(self):
        count = len(self.factory.live)
        if count:
            log.info("closing {count} connections for shutdown", count=count)
        idle = self.factory.shut_down()
        idle.addTimeout(self.grace, self.reactor, onTimeoutCancel=self._abort_stragglers)
        return idle

    def _abort_stragglers(self, result, timeout):
        for leg in list(self.factory.live) + list(self.factory.upstream_live):
            if leg.transport is not None:
                leg.transport.abortConnection()  # even one already closing gracefully
        log.warn("aborted connections still open after {timeout}s", timeout=timeout)
        # The aborted connections end on the reactor's next turn: wait for it, so that each
        # still logs its report before the reactor stops.
        return deferLater(self.reactor, 0, lambda: None)
