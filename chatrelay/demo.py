"""`twistd chatrelay --demo`: the relay plus an in-process fake Binance and a chat page at /demo/.

The page asks /demo/session for what a trading backend would hand a browser (a fresh Binance
chat URL with a single-use token, and a relay ticket for it), and drives the fake Binance
through /demo/push and /demo/drop.
"""

import json

from twisted.application.service import Service
from twisted.logger import Logger

from chatrelay.credentials import mint_ticket
from chatrelay.fakebinance import FakeBinance
from chatrelay.http import Response
from chatrelay.static import file_handler, web_file
from chatrelay.targets import Allowlist, parse_pattern

log = Logger(namespace="chatrelay.demo")
ORDER_NO = "20476365073825144832"


class DemoService(Service):
    """Runs the fake Binance beside the relay and lets the relay reach it."""

    def __init__(self, factory, token, ticket_ttl):
        self.factory = factory
        self.token = token
        self.ticket_ttl = ticket_ttl
        self.fake = FakeBinance(factory.reactor, push_statistics_on_open=True)

    def startService(self):
        """IService API."""
        super().startService()
        return self.fake.listen("tcp:0:interface=127.0.0.1").addCallback(self._listening)

    def _listening(self, port):
        gate = self.factory.gate
        pattern = parse_pattern(f"ws://127.0.0.1:{self.fake.port}/chat/")
        gate.allowlist = Allowlist(gate.allowlist.patterns + (pattern,))
        log.info("demo: fake Binance chat on {pattern}; open /demo/ on the relay's port", pattern=str(pattern))

    def stopService(self):
        """IService API."""
        super().stopService()
        return self.fake.stop()

    def install(self, routes):
        """Add the demo's paths."""
        routes.add("/demo/", file_handler("demo/index.html"))
        for asset in web_file("demo").iterdir():
            routes.add(f"/demo/{asset.name}", file_handler(f"demo/{asset.name}"))
        routes.add("/demo/session", self.session)
        routes.add("/demo/push", self.push)
        routes.add("/demo/drop", self.drop)

    def session(self, request):
        """What a backend gives the browser: target URL (fresh token) and a ticket for it."""
        target = self.fake.chat_url()
        body = {"target": target, "ticket": mint_ticket(self.token, target, self.ticket_ttl), "orderNo": ORDER_NO}
        return _json(body)

    def push(self, request):
        """Push a counterparty message (?kind=text) or a "buyer paid" system message (default)."""
        kind = request.query.get("kind", ["buyer_paid"])[0]
        for connection in list(self.fake.connections):
            if kind == "text":
                connection.push_counterparty_text(ORDER_NO, request.query.get("content", ["Hello!"])[0][:500])
            else:
                connection.push_system(ORDER_NO, "buyer_payed")
        return _json({"pushed": len(self.fake.connections)})

    def drop(self, request):
        """Make the fake Binance drop every connection without a close (the page sees 1014)."""
        connections = list(self.fake.connections)
        for connection in connections:
            connection.drop()
        return _json({"dropped": len(connections)})


def _json(body):
    return Response(200, json.dumps(body).encode() + b"\n", "application/json")


def install_demo(service, factory, config):
    """Attach the demo to the relay service."""
    demo = DemoService(factory, config["token"][0], config["ticket-ttl"])
    demo.setServiceParent(service)
    demo.install(factory.routes)
    return demo
