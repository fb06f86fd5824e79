"""The files in etc/, tested for real: nginx in front of the relay and the fake Binance, and the
systemd unit checked by systemd-analyze."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from zope.interface import implementer

from twisted.internet import defer, protocol, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IPolicyForHTTPS

from chatrelay.fakebinance import FakeBinance
from tests.certs import CertificateAuthority
from tests.loopback import TOKEN, WAIT, open_browser, relay_url, start_relay, twistd_path

ETC = Path(__file__).resolve().parent.parent / "etc"
BROWSER_ADDRESS = "127.0.0.2"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_config(directory, nginx_port, relay_port, ca):
    """The shipped config, with the host, certificates, logs, ports and relay address substituted."""
    (directory / "logs").mkdir()
    ca.write_server_files(directory, "localhost")
    shipped = (ETC / "nginx" / "chatrelay.conf").read_text()
    site = (
        shipped.replace("/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(directory / "cert.pem"))
        .replace("/etc/letsencrypt/live/chat.example.com/privkey.pem", str(directory / "key.pem"))
        .replace("/var/log/nginx/", str(directory / "logs") + "/")
        .replace("chat.example.com", "localhost")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{nginx_port} ssl;")
        .replace("listen [::]:443 ssl;", "")
        .replace("127.0.0.1:8080", f"127.0.0.1:{relay_port}")
    )
    assert site.count(str(nginx_port)) == 1 and site.count(str(relay_port)) == 1
    (directory / "chatrelay.conf").write_text(site)
    (directory / "nginx.conf").write_text(
        f"""
        pid {directory}/nginx.pid;
        error_log {directory}/logs/main-error.log info;
        events {{ worker_connections 256; }}
        http {{
            access_log {directory}/logs/main-access.log;
            client_body_temp_path {directory}/tmp-body;
            proxy_temp_path {directory}/tmp-proxy;
            fastcgi_temp_path {directory}/tmp-fastcgi;
            uwsgi_temp_path {directory}/tmp-uwsgi;
            scgi_temp_path {directory}/tmp-scgi;
            include {directory}/chatrelay.conf;
        }}
        """
    )
    return directory / "nginx.conf"


class Nginx(protocol.ProcessProtocol):
    """nginx in the foreground."""

    def __init__(self):
        self.output = bytearray()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        """ProcessProtocol API."""
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        """ProcessProtocol API."""
        self.ended.callback(reason.value.exitCode)


@defer.inlineCallbacks
def wait_for_port(reactor, port, limit=WAIT):
    """Fires once something accepts connections on the loopback port (bounded retries)."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    deadline = reactor.seconds() + limit
    while True:
        try:
            connection = yield endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
        except Exception:
            if reactor.seconds() > deadline:
                raise
            yield deferLater(reactor, 0.05)
        else:
            connection.transport.loseConnection()
            return


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """nginx (shipped config) -> relay (--trusted-proxy 127.0.0.1) -> fake Binance."""
    from twisted.internet import reactor

    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        pytest.fail("nginx is not installed (.ci/run installs it with apt-get)")
    directory = tmp_path_factory.mktemp("nginx")
    ca = CertificateAuthority()
    fake = FakeBinance(reactor)
    pytest_twisted.blockon(fake.listen())
    relay = pytest_twisted.blockon(
        start_relay(reactor, "--allow-target", f"ws://127.0.0.1:{fake.port}/chat/", "--trusted-proxy", "127.0.0.1")
    )
    nginx_port = free_port()
    config = nginx_config(directory, nginx_port, relay.port, ca)
    nginx = Nginx()
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    reactor.spawnProcess(nginx, binary, [binary, "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
                         env=os.environ.copy())
    pytest_twisted.blockon(wait_for_port(reactor, nginx_port))
    yield {"fake": fake, "relay": relay, "nginx_port": nginx_port, "ca": ca, "dir": directory}
    nginx.transport.signalProcess(signal.SIGQUIT)
    pytest_twisted.blockon(nginx.ended.addTimeout(WAIT, reactor))
    relay.kill()
    pytest_twisted.blockon(fake.stop())


def through_nginx(reactor, stack, target, key=TOKEN, headers=None):
    """A browser on 127.0.0.2 opening wss://localhost:PORT/chat-relay/?key=..&target=.."""
    options = ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(stack["ca"].cert_pem))
    tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", stack["nginx_port"], bindAddress=(BROWSER_ADDRESS, 0))
    url = relay_url(stack["nginx_port"], target, key=key, path="/chat-relay/", base="wss://localhost")
    return open_browser(reactor, url, endpoint=wrapClientTLS(options, tcp), headers=headers)


@pytest_twisted.inlineCallbacks
def test_messages_and_closes_survive_the_hop(reactor, stack):
    """Messages both ways, then Binance's close code and reason, through nginx."""
    fake = stack["fake"]
    factory = through_nginx(reactor, stack, fake.chat_url())
    browser = yield factory.opened
    binance = yield fake.next_connection()
    browser.sendMessage(json.dumps({"type": "text", "orderNo": "1", "content": "via nginx", "uuid": "n1"}).encode())
    echo, is_binary = yield browser.next_message()
    assert json.loads(echo)["content"] == "via nginx" and not is_binary
    binance.send_binary(b"\x00\x01")
    assert (yield browser.next_message()) == (b"\x00\x01", True)
    binance.close(4001, "order finished")
    assert (yield factory.closed) == (True, 4001, "order finished")


@pytest_twisted.inlineCallbacks
def test_browser_close_and_refusals_survive_the_hop(reactor, stack):
    """The browser's close reaches Binance; a wrong key is still 4401."""
    fake = stack["fake"]
    factory = through_nginx(reactor, stack, fake.chat_url())
    browser = yield factory.opened
    binance = yield fake.next_connection()
    browser.sendCloseFrame(4000, b"logout")
    assert (yield binance.closed) == (True, 4000, "logout")
    refused = through_nginx(reactor, stack, fake.chat_url(), key="wrong")
    yield refused.opened
    assert (yield refused.closed)[:2] == (True, 4401)


@pytest_twisted.inlineCallbacks
def test_browser_address_reaches_the_relay_log_and_no_log_holds_secrets(reactor, stack):
    """The relay logs the browser's address (from nginx's X-Forwarded-For, not from one hidden in
    another header behind a byte Autobahn's parser takes for a line break); no log has the key or
    token."""
    fake = stack["fake"]
    target = fake.chat_url()
    factory = through_nginx(reactor, stack, target, headers={"User-Agent": "M\x85X-Forwarded-For: 203.0.113.99"})
    yield factory.opened
    binance = yield fake.next_connection()
    binance.close(1000, "bye")
    yield factory.closed
    relay = stack["relay"]
    yield relay.wait_for(re.escape(BROWSER_ADDRESS.encode()) + rb" \[127\.0\.0\.1:\d+\] upstream_closed").addTimeout(WAIT, reactor)
    token = target.split("token=")[1].split("&")[0]
    logs = {path.name: path.read_text() for path in (stack["dir"] / "logs").iterdir()}
    logs["relay"] = relay.text
    assert "/chat-relay/" in logs["chatrelay.access.log"]
    for name, text in logs.items():
        for secret in (TOKEN, token, fake.listen_key):
            assert secret not in text, f"{secret!r} in {name}"


@implementer(IPolicyForHTTPS)
class TrustOnly:
    """HTTPS client policy: the test CA's certificate for localhost, nothing else."""

    def __init__(self, ca):
        self.options = ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(ca.cert_pem))

    def creatorForNetloc(self, hostname, port):
        """IPolicyForHTTPS API."""
        return self.options


@pytest_twisted.inlineCallbacks
def test_metrics_are_not_served_through_nginx(reactor, stack):
    """nginx refuses every path ending in /metrics (the relay serves it under any prefix); other
    plain requests, such as /healthz, reach the relay."""
    agent = Agent(reactor, contextFactory=TrustOnly(stack["ca"]), connectTimeout=WAIT,
                  bindAddress=(BROWSER_ADDRESS, 0))
    base = f"https://localhost:{stack['nginx_port']}/chat-relay"
    statuses = {}
    for path in ("/healthz", "/metrics", "/x/metrics", "/chat-relay/metrics"):
        response = yield agent.request(b"GET", (base + path).encode()).addTimeout(WAIT, reactor)
        yield readBody(response)
        statuses[path] = response.code
    assert statuses == {"/healthz": 200, "/metrics": 404, "/x/metrics": 404, "/chat-relay/metrics": 404}


def test_systemd_unit_verifies(tmp_path):
    """etc/systemd/chatrelay.service passes systemd-analyze verify (with this machine's twistd)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ETC / "systemd" / "chatrelay.service").read_text()
    assert "EnvironmentFile=" in unit and "Restart=on-failure" in unit and "DynamicUser=yes" in unit
    assert "--reactor=chatrelay --logger=chatrelay.logs.observer chatrelay" in unit
    local = tmp_path / "chatrelay.service"
    local.write_text(unit.replace("/opt/chatrelay/venv/bin/twistd", twistd_path()))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_systemd_template_units_verify(tmp_path):
    """chatrelay@.socket and chatrelay@.service (several processes on one port) verify as instance 1."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    service = (ETC / "systemd" / "chatrelay@.service").read_text()
    socket_unit = (ETC / "systemd" / "chatrelay@.socket").read_text()
    assert "--listen systemd:domain=INET:index=0" in service and "ReusePort=yes" in socket_unit
    assert "--reactor=chatrelay --logger=chatrelay.logs.observer chatrelay" in service
    (tmp_path / "chatrelay@1.service").write_text(service.replace("/opt/chatrelay/venv/bin/twistd", twistd_path()))
    (tmp_path / "chatrelay@1.socket").write_text(socket_unit)
    result = subprocess.run([analyze, "verify", "chatrelay@1.socket", "chatrelay@1.service"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
