"""Several relay processes on one port: sockets handed over as systemd's chatrelay@.socket does
(SO_REUSEPORT, fd 3, LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID), adopted with --listen systemd:domain=INET:index=0."""

import os
import socket

import pytest_twisted

from twisted.internet import defer

from chatrelay.fakebinance import FakeBinance
from tests.loopback import TOKEN, WAIT, RelayProcess, open_browser, relay_url, twistd_path


def reuseport_socket(port=0):
    """A listening loopback socket with SO_REUSEPORT, as systemd makes for ReusePort=yes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def start_activated(reactor, sock, fake_port):
    """twistd chatrelay given `sock` as its fd 3, the way systemd socket activation does."""
    relay = RelayProcess()
    argv = ["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=chatrelay; exec "$0" "$@"', twistd_path(), "-n", "--pidfile=",
            "--reactor=chatrelay", "--logger=chatrelay.logs.observer", "chatrelay", "--listen", "systemd:domain=INET:index=0",
            "--allow-target", f"ws://127.0.0.1:{fake_port}/chat/"]
    env = dict(os.environ, BINANCE_PROXY_TOKEN=TOKEN)
    reactor.spawnProcess(relay, argv[0], argv, env=env, childFDs={0: "w", 1: "r", 2: "r", 3: sock.fileno()})
    return relay, relay.started.addTimeout(WAIT, reactor)


@defer.inlineCallbacks
def relayed_round_trip(reactor, port, fake):
    factory = open_browser(reactor, relay_url(port, fake.chat_url()))
    browser = yield factory.opened
    binance = yield fake.next_connection()
    browser.sendMessage(b"across processes", isBinary=True)
    assert (yield binance.next_message()) == (b"across processes", True)
    browser.sendClose(1000)
    yield factory.closed


@pytest_twisted.inlineCallbacks
def test_two_processes_share_one_port(reactor):
    """Both processes adopt their socket; the port keeps serving when either one stops."""
    fake = FakeBinance(reactor)
    yield fake.listen()
    first_socket = reuseport_socket()
    port = first_socket.getsockname()[1]
    second_socket = reuseport_socket(port)
    relays = []
    try:
        for sock in (first_socket, second_socket):
            relay, started = start_activated(reactor, sock, fake.port)
            relays.append(relay)
            yield started
        first_socket.close()  # the processes hold their own copies now
        second_socket.close()
        for relay in relays:
            assert f"starting on {port}" in relay.text
        yield relayed_round_trip(reactor, port, fake)
        assert (yield relays[0].terminate().addTimeout(WAIT, reactor)) == 0
        yield relayed_round_trip(reactor, port, fake)
    finally:
        for relay in relays:
            relay.kill()
        yield fake.stop()
