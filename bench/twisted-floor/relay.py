"""The floor of a relay hop in Twisted: a benchmark baseline, not a relay to deploy.

    python bench/twisted-floor/relay.py --port PORT [--allow-prefix ws://127.0.0.1:]

It does about the least a relay in Twisted must do per connection: accept, read the request
head, check the key and the target's prefix, connect to the target, send it the browser's
handshake with the target's path, and from then on copy bytes both ways untouched (the
target's 101 answers the browser's own Sec-WebSocket-Key, so no frame is parsed, masked or
validated); a close on one side closes the other. It checks no header, sends no ping, has no
flow control, counts nothing and logs nothing per connection; being a byte splice, it passes
bench/load/check.js. Writes go out at once when the socket takes them, as chatrelay's do
(`chatrelay.writes.write_through`) when chatrelay is importable. bench/ab.py runs it as `--src
twisted-floor`, with the first chatrelay tree given to ab.py on its path, so on chatrelay's
reactor; without chatrelay, on Twisted's epoll reactor and `transport.write`. Not hardened: a
benchmark tool on loopback (a malformed target gives a traceback, the prefix check is a plain
string comparison).
"""

import argparse
import hmac
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reference_reactor import install, write_through  # noqa: E402

install()

from twisted.internet import protocol, reactor  # noqa: E402

MAX_HEAD = 8192
TOKEN = os.environ["BINANCE_PROXY_TOKEN"].encode()


class Upstream(protocol.Protocol):
    """The relay's connection to the target: sends the handshake, then copies bytes back."""

    def __init__(self, browser, head):
        self.browser = browser
        self.head = head

    def connectionMade(self):
        if self.browser.gone:
            self.transport.loseConnection()
            return
        self.browser.upstream = self
        write_through(self.transport, self.head + self.browser.pending)
        self.browser.pending = b""

    def dataReceived(self, data):
        write_through(self.browser.transport, data)

    def connectionLost(self, reason):
        self.browser.upstream = None
        self.browser.transport.loseConnection()


class UpstreamFactory(protocol.ClientFactory):
    """One connection attempt for one browser."""

    noisy = False  # no log line per connection

    def __init__(self, browser, head):
        self.browser = browser
        self.head = head

    def buildProtocol(self, addr):
        return Upstream(self.browser, self.head)

    def clientConnectionFailed(self, connector, reason):
        self.browser.transport.loseConnection()


class Browser(protocol.Protocol):
    """The browser's connection: reads the head, connects upstream, then copies bytes on."""

    def __init__(self, allow_prefix):
        self.allow_prefix = allow_prefix
        self.buffer = b""
        self.pending = b""
        self.upstream = None
        self.started = False
        self.gone = False

    def dataReceived(self, data):
        if self.upstream is not None:
            write_through(self.upstream.transport, data)
            return
        if self.started:
            self.pending += data
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self.transport.loseConnection()
            return
        head, self.pending = self.buffer[:end + 2], self.buffer[end + 4:]
        self.buffer = b""
        self.started = True
        self.connect(head)

    def connect(self, head):
        request_line, _, headers = head.partition(b"\r\n")
        try:
            _method, uri, _version = request_line.decode("ascii").split(" ")
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)
            key, target = query["key"][0], query["target"][0]
        except (UnicodeDecodeError, ValueError, KeyError):
            self.refuse(b"400 Bad Request")
            return
        if not hmac.compare_digest(key.encode(), TOKEN):
            self.refuse(b"401 Unauthorized")
            return
        if not target.startswith(self.allow_prefix):
            self.refuse(b"403 Forbidden")
            return
        url = urllib.parse.urlsplit(target)
        path = url.path + ("?" + url.query if url.query else "")
        upstream_head = b"GET %s HTTP/1.1\r\nHost: %s\r\n" % (path.encode(), url.netloc.encode())
        for line in headers.split(b"\r\n"):
            if line and not line.lower().startswith(b"host:"):
                upstream_head += line + b"\r\n"
        reactor.connectTCP(url.hostname, url.port, UpstreamFactory(self, upstream_head + b"\r\n"))

    def refuse(self, status):
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.gone = True
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class BrowserFactory(protocol.ServerFactory):
    """Makes a Browser for each accepted connection."""

    def __init__(self, allow_prefix):
        self.allow_prefix = allow_prefix

    def buildProtocol(self, addr):
        return Browser(self.allow_prefix)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--allow-prefix", default="ws://127.0.0.1:")
    args = parser.parse_args()
    reactor.listenTCP(args.port, BrowserFactory(args.allow_prefix), backlog=511, interface="127.0.0.1")
    print(f"listening on {args.port} with {type(reactor).__module__}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
