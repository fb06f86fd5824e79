"""Fixtures for the browser tests: `twistd chatrelay --demo` in a subprocess, and headless Chromium.

Requirements: Playwright for Python (`pip install playwright`; never `playwright install`) and
Debian's Chromium at /usr/bin/chromium (or $CHROMIUM). Without them the tests are skipped,
unless CHATRELAY_REQUIRE_BROWSER=1 (as in CI), which makes a missing piece a failure.

Playwright's sync API is used in the test thread; the relay runs in its own process (a Twisted
reactor and Playwright's sync API do not mix in one thread).
"""

import base64
import ctypes
import faulthandler
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.loopback import TOKEN, twistd_path

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root, in a container
    "--disable-gpu",
    "--disable-background-networking",  # without these Chromium stalls on an offline machine
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
START_TIMEOUT = 20  # seconds for the relay to listen
WAIT_MS = 10_000  # any single Playwright wait
TEST_TIMEOUT = 90  # hard limit per test: dump the stacks and exit
SLOW_PREFIX = "/slow/"  # upstream targets of the gated test server (tests only)

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None


def _missing():
    if sync_playwright is None:
        return "Playwright for Python is not installed (pip install playwright)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session", autouse=True)
def _browser_available():
    """Skip (or, with CHATRELAY_REQUIRE_BROWSER=1, fail) the browser tests without a browser."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CHATRELAY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CHATRELAY_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _hard_timeout():
    """A test that hangs past TEST_TIMEOUT dumps every thread's stack and ends the run."""
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _die_with_parent():
    """In the child: get SIGTERM when the test process dies (even by the hard timeout)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class DemoRelay:
    """`twistd -n chatrelay --demo` on a free loopback port."""

    _port_line = re.compile(r"RelayServerFactory starting on (\d+)")
    _demo_line = re.compile(r"demo: fake Binance chat on ws://127\.0\.0\.1:(\d+)/chat/")

    def __init__(self, token=TOKEN):
        self.token = token
        self.lines = []
        self.port = None
        self.fake_port = None
        self._ready = threading.Event()
        twistd = twistd_path()
        if twistd is None:
            raise RuntimeError("twistd not found beside this Python")
        env = {k: v for k, v in os.environ.items() if k != "BINANCE_PROXY_TOKEN"}
        env["BINANCE_PROXY_TOKEN"] = token
        argv = [twistd, "-n", "--pidfile=", "chatrelay", "--demo",
                "--listen", "tcp:0:interface=127.0.0.1",
                # the gated upstream of test_open_only_after_the_binance_leg_is_open
                "--allow-target", f"ws://127.0.0.1:*{SLOW_PREFIX}"]
        self.process = subprocess.Popen(
            argv, env=env, cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read, name="relay-output", daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self.port is None:
            self.stop()
            raise RuntimeError("the relay did not start:\n" + self.output)

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            if self.port is None and (match := self._port_line.search(line)):
                self.port = int(match.group(1))
            if self.fake_port is None and (match := self._demo_line.search(line)):
                self.fake_port = int(match.group(1))
            if self.port is not None and self.fake_port is not None:
                self._ready.set()
        self._ready.set()  # exited: let the waiter see it

    @property
    def output(self):
        """Everything the relay printed so far."""
        return "".join(self.lines)

    @property
    def http(self):
        """The relay's base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path):
        """GET path on the relay (its demo API, /healthz) and decode the JSON."""
        with urllib.request.urlopen(self.http + path, timeout=5) as response:
            return json.loads(response.read())

    def alive(self):
        """Whether the relay process is still running."""
        return self.process.poll() is None

    def stop(self):
        """SIGTERM (the relay exits 0 within 5 s); SIGKILL if it does not."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        return self.process.returncode


def _stale_web_files(relay):
    """Files under chatrelay/web/ that the (installed) relay serves differently from the source tree."""
    web = HERE.parent.parent / "chatrelay" / "web"
    stale = []
    for path in [web / "chatrelay-client.js", *sorted((web / "demo").iterdir())]:
        relative = path.relative_to(web).as_posix()
        url = relay.http + "/" + ("demo/" if relative == "demo/index.html" else relative)
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.read() != path.read_bytes():
                stale.append(relative)
    return stale


@pytest.fixture(scope="session")
def relay():
    """One demo relay for the session (each test uses fresh sessions, tokens and pages).

    It runs the installed chatrelay, like tests/loopback.py: after changing chatrelay/, run
    `pip install --no-deps .` again (checked here for the files under chatrelay/web/).
    """
    demo = DemoRelay()
    stale = _stale_web_files(demo)
    if stale:
        demo.stop()
        pytest.fail(f"the installed chatrelay serves stale {', '.join(stale)}: run `pip install --no-deps .`")
    yield demo
    code = demo.stop()
    assert code == 0, f"the relay exited with {code}:\n{demo.output}"


@pytest.fixture
def demo_relay(relay):
    """The session's relay, checked alive; its output is printed if the test fails."""
    assert relay.alive(), "the relay died:\n" + relay.output
    start = len(relay.lines)
    yield relay
    print("".join(relay.lines[start:]))  # shown by pytest for a failing test


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium, driven by Playwright."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        yield chromium
        chromium.close()


@pytest.fixture
def page(demo_relay, browser):
    """A fresh browser context and page; uncaught page errors fail the test.

    (demo_relay comes first: the relay is spawned before Playwright starts any thread.)
    """
    context = browser.new_context(viewport={"width": 1100, "height": 720}, device_scale_factor=1)
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    tab.page_errors = []
    tab.console_lines = []
    tab.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    tab.on("console", lambda message: tab.console_lines.append(f"{message.type}: {message.text}"))
    yield tab
    console = "\n".join(tab.console_lines)
    context.close()
    if console:
        print("browser console:\n" + console)
    assert not tab.page_errors, f"uncaught errors in the page: {tab.page_errors}"


@pytest.fixture
def harness(page, demo_relay):
    """A page on the relay's origin with the client module as `chatrelay` and test helpers as `H`.

    The document is the relay's own 404 page (a page served by Playwright instead would be a
    "public" page to Chromium's Local Network Access checks, which then block ws://127.0.0.1);
    harness.js is added to it as a module script and imports the client module from the relay.
    """
    page.goto(demo_relay.http + "/__browser-test-harness__")
    page.add_script_tag(content=(HERE / "harness.js").read_text(encoding="utf-8"), type="module")
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("(config) => Object.assign(H.config, config)",
                  {"token": demo_relay.token, "relayUrl": f"ws://127.0.0.1:{demo_relay.port}/chat-relay"})
    return page


class GatedUpstream:
    """A one-connection WebSocket server that holds the opening handshake until release().

    Lets a test look at the browser while the relay's upstream leg is still opening.
    """

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT_MS / 1000)
        self.port = self.listener.getsockname()[1]
        self.request_seen = threading.Event()
        self.released = threading.Event()
        self.answered = threading.Event()
        self.error = None
        self._conn = None
        self._thread = threading.Thread(target=self._serve, name="gated-upstream", daemon=True)
        self._thread.start()

    def url(self, path="chat/c2c_gated_v2?token=TOKENgated&clientType=web"):
        """A target URL on this server (allowed by the relay's --allow-target .../slow/)."""
        return f"ws://127.0.0.1:{self.port}{SLOW_PREFIX}{path}"

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            self._conn = conn
            conn.settimeout(WAIT_MS / 1000)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    raise ConnectionError("the relay went away during the handshake")
                head += chunk
            key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head).group(1)
            self.request_seen.set()
            if not self.released.wait(WAIT_MS / 1000):
                raise TimeoutError("never released")
            accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.answered.set()
            while conn.recv(4096):  # until the relay closes
                pass
        except Exception as error:  # reported by the test through .error
            self.error = error
            self.request_seen.set()

    def release(self):
        """Answer the handshake (101)."""
        self.released.set()

    def close(self):
        """Stop the server and its connection."""
        self.released.set()
        for sock in (self._conn, self.listener):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the thread's blocking recv/accept
                except OSError:
                    pass
                sock.close()
        self._thread.join(WAIT_MS / 1000)


@pytest.fixture
def gated_upstream():
    """A GatedUpstream, closed after the test."""
    server = GatedUpstream()
    yield server
    server.close()


@pytest.fixture(scope="session")
def docs_dir(tmp_path_factory):
    """Where the demo screenshot goes: the repository's docs/ with CHATRELAY_UPDATE_DOCS=1
    (so that a plain test run leaves the work tree clean), a temporary folder otherwise."""
    if os.environ.get("CHATRELAY_UPDATE_DOCS") != "1":
        return tmp_path_factory.mktemp("docs")
    path = HERE.parent.parent / "docs"
    path.mkdir(exist_ok=True)
    return path

