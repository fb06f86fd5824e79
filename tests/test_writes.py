"""Writing relayed frames to an idle socket at once (chatrelay/writes.py), on real loopback sockets."""

import pytest_twisted

from twisted.internet import defer, endpoints, protocol

from chatrelay.writes import write_through


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
        write_through(sender.transport, small)
        assert not sender.transport._tempDataBuffer and not sender.transport.dataBuffer
        write_through(sender.transport, large)
        assert sender.transport._tempDataBuffer  # the rest waits for the reactor
        write_through(sender.transport, b"!")  # behind the queued rest, not before it
        receiver.expected += 1
        received = yield receiver.done.addTimeout(30, reactor)
        assert received == small + large + b"!"
        sender.transport.loseConnection()
    finally:
        yield port.stopListening()
