"""The trims of Autobahn's and Twisted's per-frame costs (chatrelay/fastpath.py)."""

import pytest_twisted

from twisted.internet import defer, endpoints, protocol

import autobahn.websocket.protocol as websocket_protocol

from chatrelay import fastpath
from chatrelay.legs import UpstreamFactory


def test_debug_helpers_format_the_same_text_lazily():
    """Autobahn's log-argument helpers are lazy once the relay is imported, and give the same text."""
    import chatrelay.legs  # noqa: F401  (applies defer_debug_formatting)

    for name in ("hltype", "hlval", "pformat"):
        helper = getattr(websocket_protocol, name)
        original = helper.lazy_original
        value = fastpath.write_through if name == "hltype" else {"a": [1, 2]}
        assert f"{helper(value)}" == f"{original(value)}"
        assert str(helper(value)) == str(original(value))


def test_protocol_options_live_on_the_class(harness):
    """Each leg reads the factory's options without holding a copy of its own."""
    leg = harness.factory.buildProtocol(None)
    factory = harness.factory
    assert leg.maxMessagePayloadSize == factory.maxMessagePayloadSize
    assert leg.autoPingRestartOnAnyTraffic is True
    assert "maxMessagePayloadSize" not in vars(leg)
    factory.setProtocolOptions(maxMessagePayloadSize=12345)
    assert harness.factory.buildProtocol(None).maxMessagePayloadSize == 12345


def test_a_function_option_is_not_bound_to_the_protocol():
    """perMessageCompressionAccept stays a plain function on the class."""

    class Factory:
        pass

    def accept(offers):
        return offers

    factory = Factory()
    for name in websocket_protocol.WebSocketServerProtocol.CONFIG_ATTRS:
        setattr(factory, name, None)
    factory.perMessageCompressionAccept = accept
    leg_class = fastpath.options_on_class(websocket_protocol.WebSocketServerProtocol, factory)
    assert leg_class.__new__(leg_class).perMessageCompressionAccept(["offer"]) == ["offer"]


def test_upstream_factories_share_their_configuration(harness):
    """Each connection's upstream factory holds only its target, subprotocols and relay."""
    from chatrelay.targets import parse_target

    configured = harness.factory._upstream_factory
    target = parse_target("ws://upstream.test/chat/k?token=t&clientType=web")
    one, two = configured(target, ["chat"], "relay-1"), configured(target, None, "relay-2")
    assert issubclass(configured, UpstreamFactory)
    assert one.protocol is two.protocol
    assert one.protocol.maxMessagePayloadSize == harness.factory.maxMessagePayloadSize
    assert one.protocols == ["chat"] and two.protocols == []
    assert one.relay == "relay-1" and not hasattr(configured, "relay")
    assert one.resource == "/chat/k?token=t&clientType=web"


class Collect(protocol.Protocol):
    """Collects what it receives; `done` fires after `expected` bytes."""

    def __init__(self, expected):
        self.received = []
        self.size = 0
        self.expected = expected
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.received.append(data)
        self.size += len(data)
        if self.size >= self.expected:
            self.done.callback(b"".join(self.received))


@pytest_twisted.inlineCallbacks
def test_write_through_sends_at_once_and_queues_the_rest(reactor):
    """On an idle TCP connection the data leaves at once; what the socket cannot take is
    queued behind it in order, through Twisted's own buffer."""
    small = b"s" * 100
    large = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than a loopback socket takes at once
    receiver = Collect(len(small) + len(large))
    server = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = yield server.listen(protocol.Factory.forProtocol(lambda: receiver))
    try:
        client = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port, timeout=5)
        sender = yield client.connect(protocol.Factory.forProtocol(protocol.Protocol))
        fastpath.write_through(sender.transport, small)
        assert not sender.transport._tempDataBuffer and not sender.transport.dataBuffer
        fastpath.write_through(sender.transport, large)
        assert sender.transport._tempDataBuffer  # the rest waits for the reactor
        fastpath.write_through(sender.transport, b"!")  # behind the queued rest, not before it
        receiver.expected += 1
        received = yield receiver.done.addTimeout(30, reactor)
        assert received == small + large + b"!"
        sender.transport.loseConnection()
    finally:
        yield port.stopListening()
