"""Writing relayed frames to a socket at once, rather than on the reactor's next turn."""

from twisted.internet import tcp

_PLAIN_TCP = (tcp.Server, tcp.Client)


def write_through(transport, data):
    """transport.write(data), but sent at once when the transport has nothing queued.

    Twisted queues every write until the reactor's next turn, which costs two epoll_ctl calls
    and one more dispatch per relayed frame; an idle plain TCP transport can take the data
    right away. Whatever the socket does not take goes through transport.write as usual, so
    order, flow control (producers) and error handling stay Twisted's. The check reads
    Twisted's write buffers and state (FileDescriptor.dataBuffer, _tempDataBuffer, _aborting,
    _writeDisconnected); tests/test_writes.py fails if they change.
    """
    if (
        type(transport) in _PLAIN_TCP
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._aborting
        and not transport._writeDisconnected
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:  # BlockingIOError included: the reactor's own write finds any error
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
