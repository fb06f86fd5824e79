"""The demo page in Chromium through real nginx with the project's etc/nginx/chatrelay.conf:
https page, wss:// socket, both under /chat-relay/, as in production."""

import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests.browser.test_demo_page import RECORD_SOCKETS, send
from tests.certs import CertificateAuthority
from tests.test_deploy import free_port, nginx_config

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips (or fails) every test without Playwright
    expect = None


@pytest.fixture(scope="module")
def nginx_front(relay, tmp_path_factory):
    """nginx with the shipped config (TLS on a free port) in front of the session's demo relay."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    directory = tmp_path_factory.mktemp("nginx-browser")
    port = free_port()
    config = nginx_config(directory, port, relay.port, CertificateAuthority())
    process = subprocess.Popen([binary, "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:  # bounded: until nginx accepts connections, or 15 s
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("nginx did not start")
            time.sleep(0.05)
    yield f"https://localhost:{port}", directory
    process.send_signal(signal.SIGQUIT)
    process.wait(10)


def test_demo_through_nginx(browser, nginx_front, demo_relay):
    """Round trip, a Binance drop seen as 1014 and the reconnect, all through nginx; its access
    log has the requests without their query strings."""
    base, directory = nginx_front
    context = browser.new_context(ignore_https_errors=True)  # the test CA is not Chromium's
    page = context.new_page()
    page.add_init_script(RECORD_SOCKETS)
    try:
        page.goto(f"{base}/chat-relay/demo/")
        expect(page.locator("#state")).to_have_text("open")
        echoed = send(page, "Hello through nginx")
        expect(echoed.locator(".id")).to_have_text(re.compile(r"^#\d{10,}$"))
        assert page.evaluate("window.__sockets[0].url").startswith(base.replace("https", "wss") + "/chat-relay/")
        page.click("#drop")
        expect(page.locator("#log")).to_contain_text('close 1014 "upstream connection lost"; reconnect 1/5')
        expect(page.locator("#log")).to_contain_text("open (attempt 2)", timeout=6000)
        send(page, "Back through nginx")
    finally:
        context.close()
    access = (directory / "logs" / "chatrelay.access.log").read_text()
    assert "GET /chat-relay/demo/ " in access
    assert "ticket=" not in access and "token=" not in access
