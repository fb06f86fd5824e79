"""GET /healthz and GET /metrics, on the relay's own port."""

import json

from chatrelay.clients import in_networks, parse_networks
from chatrelay.http import Response
from chatrelay.metrics import CONTENT_TYPE


class StatusPages:
    """Health for load balancers and systemd; Prometheus metrics for the allowed addresses."""

    def __init__(self, factory, metrics_allow=("127.0.0.1", "::1")):
        self.factory = factory
        self.metrics_allow = parse_networks(metrics_allow)
        self.stopping = False

    def install(self, routes):
        """Add the two paths to `routes`."""
        routes.add("/healthz", self.healthz)
        routes.add("/metrics", self.metrics)

    def healthz(self, request):
        """200 with the open connection count; 503 while shutting down."""
        body = json.dumps({
            "status": "stopping" if self.stopping else "ok",
            "connections": len(self.factory.live),
            "pairs": self.factory.metrics.pair_count(),
        }).encode() + b"\n"
        return Response(503 if self.stopping else 200, body, "application/json")

    def metrics(self, request):
        """The Prometheus text format, or 403 for clients outside --metrics-allow."""
        if not in_networks(request.client, self.metrics_allow):
            return Response(403, b"forbidden\n")
        return Response(200, self.factory.metrics.exposition(), CONTENT_TYPE)
