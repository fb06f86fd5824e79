"""Prometheus metrics, in the relay's own registry.

Traffic counters cost nothing per message: each connection keeps plain integer counters
(relay.Direction), and the collector adds the live ones to the finished ones at scrape time.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chatrelay.closecodes import metric_label
from chatrelay.relay import BROWSER, UPSTREAM

CONTENT_TYPE = CONTENT_TYPE_LATEST
_DIRECTION_NAMES = {BROWSER: "browser_to_upstream", UPSTREAM: "upstream_to_browser"}


class RelayMetrics:
    """The relay's metrics: pairs, handshakes, closes, traffic, upstream connect latency."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.open_pairs = Gauge(
            "chatrelay_open_pairs", "Browser connections joined to an open upstream leg.",
            registry=self.registry,
        )
        self.connections = Gauge(
            "chatrelay_connections", "Browser connections, whatever their stage.", registry=self.registry
        )
        self.handshakes = Counter(
            "chatrelay_handshakes", "Browser handshakes by outcome: relayed, or the refusal's name.",
            ["outcome", "code"], registry=self.registry,
        )
        self.closes = Counter(
            "chatrelay_closes", "Closed legs by side and the close code on that leg's wire (1006: lost; "
            "other application codes as 3xxx and 4xxx).",
            ["side", "code"], registry=self.registry,
        )
        self.connect_seconds = Histogram(
            "chatrelay_upstream_connect_seconds", "Time to open an upstream leg (TCP, TLS, WebSocket).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=self.registry,
        )
        self._live = set()
        self._children = {}
        self._finished = {(kind, side): 0 for kind in ("messages", "bytes") for side in _DIRECTION_NAMES}
        self.registry.register(_TrafficCollector(self))

    def _child(self, metric, *labels):
        # metric.labels(*labels), remembered: prometheus_client takes a lock and checks every
        # label value on each call, and the relay makes two or three such calls per connection.
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_connections(self, live):
        """Report len(live), the browser connections of the relay, as chatrelay_connections."""
        self.connections.set_function(lambda: len(live))

    def pair_count(self):
        """Pairs relaying now."""
        return len(self._live)

    def handshake(self, outcome, code):
        """A browser handshake ended in `outcome` (close code `code`, or "101" when relayed)."""
        self._child(self.handshakes, outcome, str(code)).inc()

    def joined(self, report):
        """A pair started relaying."""
        self.open_pairs.inc()
        self._live.add(report)
        if report.connect_seconds is not None:
            self.connect_seconds.observe(report.connect_seconds)

    def ended(self, report):
        """A browser connection (and its upstream leg, if any) is over."""
        for side, close in report.closes.items():
            if close is not None:
                self._child(self.closes, side, metric_label(close.code)).inc()
        if report in self._live:
            self._live.discard(report)
            self.open_pairs.dec()
            for side, direction in report.directions.items():
                self._finished[("messages", side)] += direction.messages
                self._finished[("bytes", side)] += direction.bytes

    def traffic(self, kind):
        """Total messages or bytes per side so far, live connections included."""
        totals = {side: self._finished[(kind, side)] for side in _DIRECTION_NAMES}
        for report in self._live:
            for side, direction in report.directions.items():
                totals[side] += getattr(direction, kind)
        return totals

    def exposition(self):
        """The text format for GET /metrics."""
        return generate_latest(self.registry)


class _TrafficCollector:
    """Adds live connections' counters to finished ones when scraped."""

    def __init__(self, metrics):
        self.metrics = metrics

    def collect(self):
        """prometheus_client Collector API."""
        for kind, unit in (("messages", "messages"), ("bytes", "bytes")):
            family = CounterMetricFamily(
                f"chatrelay_relayed_{unit}", f"Relayed {unit} by direction.", labels=["direction"]
            )
            for side, total in self.metrics.traffic(kind).items():
                family.add_metric([_DIRECTION_NAMES[side]], total)
            yield family
