"""The demo page (/demo/ of `twistd chatrelay --demo`) in Chromium: what a new user sees."""

import re

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips (or fails) every test without Playwright
    expect = None

# Counts the page's WebSocket constructions and records each close, before any page script runs.
RECORD_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__closes = [];
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      window.__sockets.push({ url: String(url), t: performance.now() });
      this.addEventListener("close", (event) =>
        window.__closes.push({ code: event.code, reason: event.reason, wasClean: event.wasClean,
                              t: performance.now() }));
    }
  };
})();
"""


def open_demo(page, relay, query=""):
    """Load /demo/ (recording its sockets) and wait until it is connected."""
    page.add_init_script(RECORD_SOCKETS)
    page.goto(f"{relay.http}/demo/{query}")
    expect(page.locator("#state")).to_have_text("open")
    return page


def send(page, text):
    """Type and send a chat message; returns its list item once Binance's echo replaced it."""
    page.fill("#text", text)
    page.click("#send")
    echoed = page.locator(".msg-text.self", has_text=text).filter(has_text="echo: stored by Binance")
    expect(echoed).to_have_count(1)
    return echoed


@pytest.mark.parametrize("credential", ["ticket", "key"])
def test_round_trip_shows_the_echo_with_its_id(page, demo_relay, credential):
    """Type a message, see Binance's echo with its numeric id (with a ticket, and with the key)."""
    query = f"?key={demo_relay.token}" if credential == "key" else ""
    open_demo(page, demo_relay, query)
    echoed = send(page, "Hello through the relay")
    expect(echoed.locator(".id")).to_have_text(re.compile(r"^#\d{10,}$"))
    expect(echoed).to_have_attribute("data-id", re.compile(r"^\d+$"))
    expect(echoed.locator(".tag")).to_have_text("text")
    expect(echoed.locator(".who")).to_have_text("you")
    expect(page.locator(".msg.pending")).to_have_count(0)
    assert f"/chat-relay/?{credential}=" in page.evaluate("window.__sockets[0].url")
    expect(page.locator("#log")).to_contain_text("Binance statistics: unreadChatCount = 0")


def test_pushed_messages_show(page, demo_relay):
    """Binance pushes "buyer paid" (a system message) and a counterparty text: both show, with ids."""
    open_demo(page, demo_relay)
    page.click("#push-paid")
    system = page.locator(".msg-system")
    expect(system).to_have_count(1)
    expect(system.locator(".body")).to_have_text("buyer_payed: The buyer marked the order as paid.")
    expect(system).to_have_attribute("data-id", re.compile(r"^\d+$"))
    expect(system.locator(".tag")).to_have_text("system")

    page.click("#push-text")
    expect(page.locator(".msg-text:not(.self) .body")).to_have_text(["Hi, I have paid."])
    assert demo_relay.get_json("/demo/push?kind=text&content=Pushed%20by%20the%20test")["pushed"] >= 1
    expect(page.locator(".msg-text:not(.self) .body")).to_have_text(["Hi, I have paid.", "Pushed by the test"])
    expect(page.locator(".msg-text:not(.self) .who").first).to_have_text(re.compile(r"^User-"))


def test_drop_shows_1014_and_reconnects_with_backoff(page, demo_relay):
    """The fake Binance drops the connection: the page logs close 1014, waits 1000 ms, reconnects
    with a fresh session; a second drop soon after waits 2000 ms."""
    sessions = []
    page.on("request", lambda request: sessions.append(request.url) if "/demo/session" in request.url else None)
    open_demo(page, demo_relay)
    log = page.locator("#log")

    page.click("#drop")
    expect(log).to_contain_text('close 1014 "upstream connection lost"; reconnect 1/5 in 1000 ms')
    expect(log).to_contain_text("open (attempt 2)", timeout=6000)
    expect(page.locator("#state")).to_have_text("open")

    page.click("#drop")
    expect(log).to_contain_text('close 1014 "upstream connection lost"; reconnect 2/5 in 2000 ms')
    expect(page.locator("#state")).to_have_text("connecting")
    expect(page.locator("#state-detail")).to_have_text("retry 2/5 in 2000 ms")
    expect(log).to_contain_text("open (attempt 3)", timeout=8000)
    expect(page.locator("#state")).to_have_text("open")

    sockets = page.evaluate("window.__sockets")
    closes = page.evaluate("window.__closes")
    assert len(sockets) == 3 and len(sessions) == 3
    assert [c["code"] for c in closes] == [1014, 1014]
    for close, next_socket, delay in zip(closes, sockets[1:], [1000, 2000]):
        assert next_socket["t"] - close["t"] >= delay - 2
    send(page, "Back after two drops")  # the new connection works


def test_wrong_key_shows_the_error_and_does_not_retry(page, demo_relay):
    """?key=wrong: the relay closes with 4401, the page shows why, and makes no second attempt."""
    page.add_init_script(RECORD_SOCKETS)
    page.goto(f"{demo_relay.http}/demo/?key=wrong")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_text("The relay refused the connection: 4401 invalid relay key or ticket")
    expect(error).to_have_attribute("data-code", "4401")
    expect(page.locator("#state")).to_have_text("closed")
    expect(page.locator("#log")).to_contain_text(
        'close 4401 "invalid relay key or ticket"; refused by the relay, not retrying')
    expect(page.locator("#reconnect")).to_be_visible()
    expect(page.locator("#send")).to_be_disabled()
    state = page.evaluate("({ sockets: window.__sockets.length, closes: window.__closes.map((c) => c.code),"
                          " pending: chatDemo.client.retryPending, attempts: chatDemo.client.attempts })")
    assert state == {"sockets": 1, "closes": [4401], "pending": False, "attempts": 1}


def test_screenshot_for_the_docs(page, demo_relay, docs_dir):
    """docs/demo.png: an echo with its id, a counterparty message, "buyer paid", and a reconnect."""
    open_demo(page, demo_relay)
    send(page, "Hello! Is the payment on its way?")
    page.click("#push-text")
    expect(page.locator(".msg-text:not(.self)")).to_have_count(1)
    page.click("#push-paid")
    expect(page.locator(".msg-system")).to_have_count(1)
    page.click("#drop")
    expect(page.locator("#log")).to_contain_text("open (attempt 2)", timeout=6000)
    send(page, "Thanks, releasing now.")
    page.locator("#text").blur()
    page.screenshot(path=str(docs_dir / "demo.png"), full_page=True)
    assert (docs_dir / "demo.png").stat().st_size > 10_000
