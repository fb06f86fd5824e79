"""Loopback helpers: the installed `twistd chatrelay` as a subprocess, and a browser-like client."""

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import pytest

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol

from chatrelay import closecodes
from chatrelay.fakebinance import _Flood, _Waiters

closecodes.allow_receiving_1014()

TOKEN = "relay-key-0123456789"
WAIT = 15  # seconds any single wait in a loopback test may take
LOGGER = "chatrelay.logs.observer"


def twistd_path():
    """The twistd of the Python running the tests (which runs the installed chatrelay: checked
    to be the source's)."""
    _check_installed_is_the_source()
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    return beside if os.path.exists(beside) else shutil.which("twistd")


class RelayProcess(protocol.ProcessProtocol):
    """`twistd -n chatrelay` in a subprocess: its output, its port, its exit code."""

    _port_line = re.compile(rb"RelayServerFactory(?: \(TLS\))? starting on (\d+)")

    def __init__(self):
        self.output = bytearray()
        self.port = None
        self.started = defer.Deferred()
        self.ended = defer.Deferred()
        self._watches = []

    @property
    def pid(self):
        """The relay's process id."""
        return self.transport.pid

    @property
    def text(self):
        """Everything the relay printed so far."""
        return self.output.decode("utf-8", "replace")

    def wait_for(self, pattern):
        """Fires with the regex match once the output matches `pattern` (bytes)."""
        watch = (re.compile(pattern), defer.Deferred())
        self._watches.append(watch)
        self._check_watches()
        return watch[1]

    def _check_watches(self):
        for watch in list(self._watches):
            match = watch[0].search(self.output)
            if match:
                self._watches.remove(watch)
                watch[1].callback(match)

    def outReceived(self, data):
        """ProcessProtocol API."""
        self.output += data
        self._check_watches()
        if self.port is None:
            match = self._port_line.search(self.output)
            if match:
                self.port = int(match.group(1))
                self.started.callback(self)

    errReceived = outReceived

    def processEnded(self, reason):
        """ProcessProtocol API."""
        code = reason.value.exitCode
        if not self.started.called:
            self.started.errback(RuntimeError(f"relay exited ({code}) before listening:\n{self.text}"))
        self.ended.callback(code)

    def memory_kib(self, field):
        """A /proc/PID/status memory field (VmRSS, VmHWM) in KiB."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def terminate(self):
        """SIGTERM; fires with the exit code."""
        if not self.ended.called:
            self.transport.signalProcess("TERM")
        return self.ended

    def kill(self):
        """SIGKILL, for cleanup after a failed test."""
        if not self.ended.called:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass


def start_relay(reactor, *args, token=TOKEN, env=None, twistd_reactor="chatrelay", twistd_logger=LOGGER,
                listen_first=()):
    """Start `twistd -n --reactor=chatrelay --logger=chatrelay.logs.observer chatrelay
    LISTEN_FIRST --listen tcp:0... ARGS` (as deployed; None: twistd's default reactor or
    observer); fires with the RelayProcess once the tcp:0 port listens.

    twistd starts the listeners in order, each completely, so those in `listen_first` already
    listen by then; those in ARGS may not yet (a Unix port logs "starting on" before binding).
    """
    relay = RelayProcess()
    environment = {key: value for key, value in os.environ.items() if key != "BINANCE_PROXY_TOKEN"}
    if token is not None:
        environment["BINANCE_PROXY_TOKEN"] = token
    environment.update(env or {})
    choice = [f"--reactor={twistd_reactor}"] if twistd_reactor else []
    choice += [f"--logger={twistd_logger}"] if twistd_logger else []
    argv = [twistd_path(), "-n", "--pidfile=", *choice, "chatrelay", *listen_first, "--listen", "tcp:0:interface=127.0.0.1", *args]
    reactor.spawnProcess(relay, argv[0], argv, env=environment, path=tempfile.gettempdir())
    return relay.started.addTimeout(WAIT, reactor)


@functools.cache
def _check_installed_is_the_source():
    # twistd runs the installed chatrelay and its plugins (found there, and the relay runs from
    # the temporary directory): a test of a stale install would test old code.
    found = subprocess.run(
        [sys.executable, "-c", "import chatrelay, os; print(os.path.dirname(chatrelay.__file__))"],
        cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=WAIT, check=True,
    )
    installed = Path(found.stdout.strip()).parent
    source = Path(__file__).resolve().parent.parent
    files = [*(source / "chatrelay").rglob("*.py"), *(source / "twisted" / "plugins").glob("chatrelay*.py")]
    stale = [
        str(path.relative_to(source)) for path in sorted(files)
        if not (installed / path.relative_to(source)).is_file()
        or (installed / path.relative_to(source)).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"the installed chatrelay differs from the source in {stale}: run `pip install --no-deps .`"


def relay_url(port, target, key=TOKEN, path="/chat-relay//", base="ws://127.0.0.1"):
    """The URL a browser opens, as the field's hook builds it."""
    params = []
    if key is not None:
        params.append(("key", key))
    if target is not None:
        params.append(("target", target))
    return f"{base}:{port}{path}?{urlencode(params)}"


class Browser(WebSocketClientProtocol):
    """A browser-like client: every event it sees, with Deferreds to wait on them."""

    def connectionMade(self):
        """Twisted API."""
        super().connectionMade()
        self.received_bytes = 0
        self.flood_sent = 0
        self.paused_once = defer.Deferred()
        self._flood = None
        self._frames = []
        self._messages = _Waiters()
        self._pings = _Waiters()
        self._pongs = _Waiters()
        self.count_only = False

    def onOpen(self):
        """IWebSocketChannel API."""
        self.factory.opened.callback(self)

    def onMessageFrameData(self, payload):
        """IWebSocketChannel API: count everything; keep it unless counting only."""
        self.received_bytes += len(payload)
        if not self.count_only:
            self._frames.append(payload)

    def onMessageFrameEnd(self):
        """IWebSocketChannel API: nothing (the base class buffers)."""

    def onMessageEnd(self):
        """IWebSocketChannel API."""
        payload, self._frames = b"".join(self._frames), []
        self._messages.put((payload, self.message_is_binary), keep=not self.count_only)

    def onPing(self, payload):
        """IWebSocketChannel API: record, then pong as a browser does."""
        self._pings.put(payload)
        super().onPing(payload)

    def onPong(self, payload):
        """IWebSocketChannel API."""
        self._pongs.put(payload)

    def connectionLost(self, reason):
        """Twisted API: keep how TCP ended (ConnectionDone: a FIN; ConnectionLost: a reset)."""
        self.factory.tcp_end = reason.value
        super().connectionLost(reason)

    def onClose(self, wasClean, code, reason):
        """IWebSocketChannel API."""
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(reason))
        self.factory.closed.callback((wasClean, code, reason))

    def next_message(self):
        """Fires with the next (payload, is_binary)."""
        return self._messages.get()

    def next_ping(self):
        """Fires with the next ping payload."""
        return self._pings.get()

    def next_pong(self):
        """Fires with the next pong payload."""
        return self._pongs.get()

    def flood(self, total_bytes, message_size=1 << 20):
        """Send total_bytes of binary messages, only as fast as the relay reads them."""
        self._flood = _Flood(self, total_bytes, message_size, True)
        self._flood.start()
        return self._flood.done


def open_browser(reactor, url, protocols=None, endpoint=None, headers=None):
    """Connect a Browser to `url`; returns its factory, whose `opened` and `closed` Deferreds tell."""
    factory = WebSocketClientFactory(url, protocols=protocols, headers=headers)
    factory.protocol = Browser
    # Browsers answer a close with its own code and reason (Autobahn's default is 1000).
    factory.setProtocolOptions(failByDrop=False, openHandshakeTimeout=WAIT, closeHandshakeTimeout=WAIT,
                               echoCloseCodeReason=True)
    factory.opened = defer.Deferred().addTimeout(WAIT, reactor)
    factory.closed = defer.Deferred().addTimeout(WAIT, reactor)
    factory.opened.addErrback(lambda failure: failure)  # read by the test, or by `closed`
    endpoint = endpoint or TCP4ClientEndpoint(reactor, "127.0.0.1", factory.port)
    endpoint.connect(factory).addErrback(factory.closed.errback)
    return factory


def refused_port():
    """A loopback port with nothing listening on it (bound, never listened, so nobody else gets
    it). Returns the sockets to close and the port."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    return [holder], holder.getsockname()[1]


def unanswered_port():
    """A loopback port whose TCP handshakes never complete, as a host that drops SYNs: a
    listener whose accept queue (a backlog of 1 holds two) is full of connections it never
    accepts, so that Linux drops every further SYN. Returns the sockets to close and the port."""
    import select
    import socket

    if not sys.platform.startswith("linux"):
        pytest.skip("relies on Linux dropping SYNs to a full accept queue")
    listener = socket.socket()
    held = [listener]
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        held += [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(2)]
        probe = socket.socket()
        held.append(probe)
        probe.setblocking(False)
        probe.connect_ex(("127.0.0.1", port))
        _, connected, _ = select.select([], [probe], [], 0.2)  # bounded: a check, not a wait
        assert not connected, "the kernel answered a SYN to a full accept queue"
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, port


def wait_until_stalled(reactor, progress, quiet=1.0, limit=WAIT):
    """Fire once progress() stops changing for `quiet` seconds (or reaches None); at most `limit`."""
    done = defer.Deferred()
    state = {"last": progress(), "since": reactor.seconds(), "start": reactor.seconds()}

    def check():
        now, value = reactor.seconds(), progress()
        if value is None or now - state["start"] > limit:
            done.callback(value)
            return
        if value != state["last"]:
            state["last"], state["since"] = value, now
        elif now - state["since"] >= quiet:
            done.callback(value)
            return
        reactor.callLater(0.1, check)

    check()
    return done



def wait_for_log(reactor, relay, text):
    """Fires once the relay has printed `text`."""
    return relay.wait_for(re.escape(text.encode())).addTimeout(WAIT, reactor)
