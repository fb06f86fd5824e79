"""chatrelay-client.js in Chromium: against the relay and its fake Binance, and with a scripted socket.

Each test runs on a blank page of the relay's origin (the `harness` fixture) that imports the
client module as the relay serves it (`chatrelay`) and the helpers of harness.js (`H`).
"""

import re
from urllib.parse import quote

import pytest

ENCODE_URI_COMPONENT_SAFE = "-_.!~*'()"


def test_default_policy_and_relay_urls(harness, demo_relay):
    """The default backoff is min(1000 * 2^n, 30000); URLs are built as the trading terminal's hook does."""
    target = "wss://im.binance.com:443/chat/c2c_321891acb8a443388e69610b1d29f46e_v2?token=TOKEN4e75&clientType=web"
    result = harness.evaluate(
        """(target) => {
          const { buildRelayUrl, binanceChatTarget, defaultBackoff, ChatRelayClient } = chatrelay;
          const attempt = (f) => { try { return f(); } catch (error) { return `${error.name}: ${error.message}`; } };
          const client = new ChatRelayClient({ getCredentials: () => ({}) });
          return {
            backoff: [0, 1, 2, 3, 4, 5, 6, 10].map(defaultBackoff),
            defaults: [client.keepaliveMs, client.connectTimeoutMs, client.maxRetries, client.resetAfterMs,
                       client.state, JSON.stringify(client.keepaliveMessage)],
            key: buildRelayUrl("wss://relay.example/chat-relay", { key: "k3y+/=&?", target }),
            ticket: buildRelayUrl("wss://relay.example/chat-relay/", { ticket: "1795665162.a-b_c", target }),
            https: buildRelayUrl("https://relay.example/chat-relay", { key: "k", target }),
            relative: buildRelayUrl("/chat-relay", { key: "k", target }),
            both: attempt(() => buildRelayUrl("wss://relay.example/chat-relay", { key: "k", ticket: "t", target })),
            neither: attempt(() => buildRelayUrl("wss://relay.example/chat-relay", { target })),
            notWs: attempt(() => buildRelayUrl("ftp://relay.example/", { key: "k", target })),
            binance: binanceChatTarget({ chatWssUrl: "wss://im.binance.com:443/chat",
              listenKey: "c2c_321891acb8a443388e69610b1d29f46e_v2", listenToken: "TOKEN4e75" }),
            send: client.send({ type: "ping" }),
          };
        }""",
        target,
    )
    assert result["backoff"] == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    assert result["defaults"] == [30000, 10000, 5, 30000, "closed", '{"type":"ping"}']
    encoded_target = quote(target, safe=ENCODE_URI_COMPONENT_SAFE)
    assert result["key"] == f"wss://relay.example/chat-relay/?key={quote('k3y+/=&?', safe='')}&target={encoded_target}"
    assert result["ticket"] == f"wss://relay.example/chat-relay/?ticket=1795665162.a-b_c&target={encoded_target}"
    assert result["https"] == f"wss://relay.example/chat-relay/?key=k&target={encoded_target}"
    assert result["relative"] == f"ws://127.0.0.1:{demo_relay.port}/chat-relay/?key=k&target={encoded_target}"
    assert result["both"].startswith("TypeError") and "exactly one" in result["both"]
    assert result["neither"].startswith("TypeError")
    assert result["notWs"].startswith("TypeError")
    assert result["binance"] == target
    assert result["send"] is False  # not open


@pytest.mark.parametrize("credential", ["ticket", "key"])
def test_round_trip_through_the_relay(harness, credential):
    """Connect with a ticket or the key, send a chat message, get Binance's echo with its id."""
    result = harness.evaluate(
        """async (credential) => {
          const rec = new H.Recorder();
          let calls = 0;
          const client = new chatrelay.ChatRelayClient({
            relayUrl: H.config.relayUrl,
            getCredentials: async () => {
              calls += 1;
              const s = await H.session();
              return credential === "key" ? { key: H.config.token, target: s.target }
                                          : { ticket: s.ticket, target: s.target };
            },
            WebSocket: H.CountingWebSocket,
            ...rec.callbacks(),
          });
          client.connect();
          await rec.until((r) => r.of("open").length === 1, 8000, "open");
          const sent = client.send({ type: "text", uuid: "u-1", orderNo: "20476365073825144832",
                                     content: "hello through the relay", clientType: "web" });
          const echo = await rec.until((r) => r.messages.find((m) => m.uuid === "u-1"), 8000, "the echo");
          const states = rec.of("state").map((e) => e.state);
          client.close();
          return { sent, echo, states, calls, url: H.sockets[0].url, stateAfter: client.state,
                   errors: rec.of("error").length, closes: rec.of("close").length };
        }""",
        credential,
    )
    assert result["sent"] is True
    echo = result["echo"]
    assert re.fullmatch(r"\d+", echo["id"]), echo
    assert echo["type"] == "text" and echo["content"] == "hello through the relay" and echo["self"] is True
    assert result["states"] == ["connecting", "open"]
    assert result["calls"] == 1
    assert f"/chat-relay/?{credential}=" in result["url"]
    assert result["stateAfter"] == "closed" and result["errors"] == 0 and result["closes"] == 0


def test_blob_and_text_messages_are_both_delivered_in_order(harness):
    """Through the relay, with every other message handed over as a Blob: all arrive, parsed, in order."""
    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          const kinds = [];
          const client = new chatrelay.ChatRelayClient({
            relayUrl: H.config.relayUrl,
            getCredentials: async () => { const s = await H.session(); return { ticket: s.ticket, target: s.target }; },
            WebSocket: H.blobbyWebSocket(2, kinds),
            keepaliveMs: 0,
            ...rec.callbacks(),
          });
          client.connect();
          await rec.until((r) => r.of("open").length === 1, 8000, "open");
          for (let i = 1; i <= 3; i++) {
            client.send({ type: "text", uuid: `mine-${i}`, orderNo: "20476365073825144832", content: `mine ${i}` });
            await H.getJson(`/demo/push?kind=text&content=${encodeURIComponent(`theirs ${i}`)}`);
          }
          await H.getJson("/demo/push?kind=buyer_paid");
          await rec.until((r) => r.messages.filter((m) => m.id).length === 7, 8000, "seven chat messages");
          client.close();
          return { messages: rec.messages, texts: rec.of("message").map((e) => e.text), kinds };
        }"""
    )
    assert result["kinds"].count("blob") >= 3 and result["kinds"].count("string") >= 3, result["kinds"]
    messages = result["messages"]
    assert len(messages) == len(result["kinds"])  # the statistics frame on open, then 7
    assert messages[0]["type"] == "statistics"
    chat = messages[1:]
    ids = [int(m["id"]) for m in chat]
    assert ids == sorted(ids), "delivered out of the order Binance sent them"
    assert sorted(m["content"] for m in chat if m["type"] == "text") == [
        "mine 1", "mine 2", "mine 3", "theirs 1", "theirs 2", "theirs 3"]
    system = [m for m in chat if m["type"] == "system"]
    assert len(system) == 1 and '"type":"buyer_payed"' in system[0]["content"]
    assert all(isinstance(text, str) for text in result["texts"])


def test_blob_arraybuffer_and_text_keep_their_order(harness):
    """A slow-to-read Blob followed at once by text, bytes and more: delivered in arrival order, then the close."""
    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          const client = new chatrelay.ChatRelayClient({
            relayUrl: "ws://relay.invalid/chat-relay",
            getCredentials: () => ({ key: "k", target: "wss://im.binance.com/chat/x?token=t&clientType=web" }),
            WebSocket: H.FakeSocket,
            keepaliveMs: 0,
            ...rec.callbacks(),
          });
          client.connect();
          const socket = await H.FakeSocket.next();
          socket.open();
          const big = JSON.stringify({ n: 1, padding: "x".repeat(4 << 20) });
          const bytes = (text) => new TextEncoder().encode(text);
          socket.message(new Blob([big]));
          socket.message('{"n":2}');
          socket.message(bytes('{"n":3,"text":"h\u00e9llo \u4f60\u597d"}').buffer);
          socket.message(new Blob(['{"n":4}']));
          socket.message(bytes('{"n":5}'));
          socket.message("not json");
          socket.serverClose(1000, "Bye");
          await rec.until((r) => r.of("error").length === 1, 8000, "the close");
          return {
            order: rec.events.filter((e) => e.type === "message" || e.type === "close")
              .map((e) => e.type === "close" ? `close ${e.code}` : (e.message.n ?? e.message)),
            third: rec.messages[2].text,
            error: rec.of("error")[0],
            binaryType: socket.binaryType,
          };
        }"""
    )
    assert result["order"] == [1, 2, 3, 4, 5, "not json", "close 1000"]
    assert result["third"] == "h\u00e9llo \u4f60\u597d"
    assert result["error"]["kind"] == "closed" and result["error"]["code"] == 1000 and result["error"]["fatal"] is False
    assert result["binaryType"] == "arraybuffer"


def test_binance_drop_reaches_the_page_and_retries_follow_the_backoff(harness):
    """The fake Binance drops the connection: 1014 reaches the page, and the client retries after
    backoff(0..4), fetching credentials each time; with a used token every retry fails (1014), and it
    gives up after maxRetries."""
    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          const first = await H.session();
          const calls = [];
          const client = new chatrelay.ChatRelayClient({
            relayUrl: H.config.relayUrl,
            // Binance tokens are single use: giving the first one again makes every retry fail (1014).
            getCredentials: async (info) => { calls.push(info); return { ticket: first.ticket, target: first.target }; },
            backoff: (n) => 40 * 2 ** n,
            WebSocket: H.CountingWebSocket,
            keepaliveMs: 0,
            ...rec.callbacks(),
          });
          window.client = client;
          client.connect();
          await rec.until((r) => r.of("open").length === 1, 8000, "open");
          const dropped = await H.getJson("/demo/drop");
          await rec.until((r) => r.of("error").length === 1, 15000, "giving up");
          return { dropped, calls, closes: rec.of("close"), error: rec.of("error")[0], sockets: H.sockets,
                   state: client.state, retryPending: client.retryPending, attempts: client.attempts,
                   states: rec.of("state").map((e) => e.state) };
        }"""
    )
    assert result["dropped"]["dropped"] >= 1
    closes = result["closes"]
    assert [c["code"] for c in closes] == [1014] * 6
    assert closes[0]["reason"] == "upstream connection lost"
    assert all("401" in c["reason"] for c in closes[1:]), [c["reason"] for c in closes]
    delays = [c.get("delayMs") for c in closes]
    assert delays == [40, 80, 160, 320, 640, None]  # backoff(n) for n = 0..4, then no more
    assert [c.get("retry") for c in closes] == [1, 2, 3, 4, 5, None]
    assert [c["willRetry"] for c in closes] == [True] * 5 + [False]
    sockets = result["sockets"]
    assert len(sockets) == 6 and result["attempts"] == 6
    assert [c["attempt"] for c in result["calls"]] == [1, 2, 3, 4, 5, 6]
    assert [c["retry"] for c in result["calls"]] == [0, 1, 2, 3, 4, 5]
    for close, next_socket in zip(closes, sockets[1:]):
        gap = next_socket["t"] - close["t"]
        assert close["delayMs"] - 2 <= gap <= close["delayMs"] + 2000, (close, next_socket)
    error = result["error"]
    assert error["kind"] == "gave-up" and error["code"] == 1014 and error["fatal"] is False
    assert error["attempts"] == 6
    assert result["state"] == "closed" and result["retryPending"] is False
    # The relay completes the handshake before closing with 1014, so each failed retry is "open" for an instant.
    assert result["states"] == ["connecting", "open", "connecting"] + ["open", "connecting"] * 4 + ["open", "closed"]


@pytest.mark.parametrize(
    ("credential", "target", "code"),
    [
        ("key=wrong", "session", 4401),
        ("ticket=1.bad", "session", 4401),
        ("ticket=other", "session", 4401),  # a valid ticket, for another target
        ("key=TOKEN", "http://127.0.0.1:9/chat/x", 4400),
        ("key=TOKEN", "wss://im.example.invalid/chat/x", 4403),
    ],
)
def test_refusals_are_reported_and_not_retried(harness, credential, target, code):
    """4400/4401/4403: the error says why, fatal; exactly one connection attempt; no retry pending."""
    result = harness.evaluate(
        """async ([credential, target]) => {
          const rec = new H.Recorder();
          const [name, value] = credential.split("=");
          const client = new chatrelay.ChatRelayClient({
            relayUrl: H.config.relayUrl,
            getCredentials: async () => {
              const s = await H.session();
              const t = target === "session" ? s.target : target;
              if (value === "TOKEN") return { key: H.config.token, target: t };
              if (value === "other") return { ticket: (await H.session()).ticket, target: t };
              return { [name]: value, target: t };
            },
            backoff: () => 0,
            WebSocket: H.CountingWebSocket,
            ...rec.callbacks(),
          });
          client.connect();
          const error = await rec.until((r) => r.of("error")[0], 8000, "the error");
          // A retry would be due at once (backoff 0): let every timer due by then run.
          await H.afterTimers(50);
          return { error, closes: rec.of("close"), sockets: H.sockets.length, state: client.state,
                   retryPending: client.retryPending };
        }""",
        [credential, target],
    )
    error = result["error"]
    assert error["kind"] == "refused" and error["fatal"] is True and error["code"] == code, error
    assert str(code) in error["message"] and error["reason"]
    assert len(result["closes"]) == 1 and result["closes"][0]["willRetry"] is False
    assert result["sockets"] == 1
    assert result["state"] == "closed" and result["retryPending"] is False


def test_close_codes_decide_the_retry(harness):
    """Retry on 1001, 1006, 1011-1014; stop (with the reason) on 4400/4401/4403 and anything else."""
    result = harness.evaluate(
        """async () => {
          const outcome = {};
          for (const code of [1000, 1001, 1005, 1006, 1008, 1009, 1011, 1012, 1013, 1014, 4000, 4400, 4401, 4403]) {
            const rec = new H.Recorder();
            const client = new chatrelay.ChatRelayClient({
              relayUrl: "ws://relay.invalid/chat-relay",
              getCredentials: () => ({ key: "k", target: "wss://im.binance.com/chat/x?token=t&clientType=web" }),
              WebSocket: H.FakeSocket,
              ...rec.callbacks(),
            });
            client.connect();
            const socket = await H.FakeSocket.next();
            socket.open();
            socket.serverClose(code, `reason ${code}`);
            const close = await rec.until((r) => r.of("close")[0], 2000, `close ${code}`);
            const error = rec.of("error")[0];
            outcome[code] = [close.willRetry, close.delayMs ?? null, error ? error.kind : null,
                             error ? error.fatal : null, client.state];
            client.close();
          }
          return outcome;
        }"""
    )
    retried = {"1001", "1006", "1011", "1012", "1013", "1014"}
    for code, (will_retry, delay, kind, fatal, state) in result.items():
        if code in retried:
            assert (will_retry, delay, kind, state) == (True, 1000, None, "connecting"), code
        elif code in {"4400", "4401", "4403"}:
            assert (will_retry, kind, fatal, state) == (False, "refused", True, "closed"), code
        else:
            assert (will_retry, kind, fatal, state) == (False, "closed", False, "closed"), code


def test_connect_timeout_counts_as_a_failed_try(harness):
    """No open within connectTimeoutMs (credentials included): the attempt is abandoned and retried."""
    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          let calls = 0;
          const client = new chatrelay.ChatRelayClient({
            relayUrl: "ws://relay.invalid/chat-relay",
            getCredentials: () => {
              calls += 1;
              if (calls === 1) return new Promise(() => {}); // a backend that never answers
              return { key: "k", target: "wss://im.binance.com/chat/x?token=t&clientType=web" };
            },
            WebSocket: H.FakeSocket,
            connectTimeoutMs: 300,
            maxRetries: 2,
            backoff: (n) => 5 * (n + 1),
            ...rec.callbacks(),
          });
          client.connect();
          const silent = await H.FakeSocket.next(); // attempt 2: a socket that never opens
          await rec.until((r) => r.of("close").length === 2, 3000, "the second timeout");
          const third = await H.FakeSocket.next();
          third.open();
          await rec.until((r) => r.of("open").length === 1, 3000, "open");
          const state = client.state;
          client.close();
          return { closes: rec.of("close"), state, calls, silentClosed: silent.closedBy !== null,
                   silentHandlers: silent.onopen === null && silent.onclose === null };
        }"""
    )
    closes = result["closes"]
    assert [c["timedOut"] for c in closes] == [True, True]
    assert [c["code"] for c in closes] == [1006, 1006]
    assert [c["delayMs"] for c in closes] == [5, 10]
    assert "300 ms" in closes[0]["reason"]
    assert result["silentClosed"] and result["silentHandlers"]
    assert result["state"] == "open" and result["calls"] == 3


def test_keepalive_and_send(harness):
    """`{"type":"ping"}` every keepaliveMs while open; send() JSON-encodes objects, passes strings."""
    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          const client = new chatrelay.ChatRelayClient({
            relayUrl: "ws://relay.invalid/chat-relay",
            getCredentials: () => ({ key: "k", target: "wss://im.binance.com/chat/x?token=t&clientType=web" }),
            WebSocket: H.FakeSocket,
            keepaliveMs: 25,
            ...rec.callbacks(),
          });
          client.connect();
          const socket = await H.FakeSocket.next();
          const before = client.send("too early");
          socket.open();
          const sent = [client.send({ type: "text", content: "hi" }), client.send("raw")];
          await H.within(new Promise((resolve) => {
            const poll = setInterval(() => { if (socket.sent.length >= 5) { clearInterval(poll); resolve(); } }, 5);
          }), 3000, "three keepalives");
          socket.serverClose(1000, "Bye");
          await rec.until((r) => r.of("error").length === 1, 2000, "the close");
          const count = socket.sent.length;
          await H.afterTimers(80); // three keepalive periods: none may be sent on a closed connection
          return { before, sent, frames: socket.sent, after: socket.sent.length - count, afterSend: client.send("late") };
        }"""
    )
    assert result["before"] is False and result["sent"] == [True, True]
    assert result["frames"][:2] == ['{"type":"text","content":"hi"}', "raw"]
    assert set(result["frames"][2:]) == {'{"type":"ping"}'} and len(result["frames"]) >= 5
    assert result["after"] == 0 and result["afterSend"] is False


def test_keepalive_passes_the_relay_and_binance(harness, page):
    """Through the relay, the fake Binance ignores the JSON pings and the chat keeps working."""
    harness.evaluate(
        """() => {
          window.rec = new H.Recorder();
          window.client = new chatrelay.ChatRelayClient({
            relayUrl: H.config.relayUrl,
            getCredentials: async () => { const s = await H.session(); return { ticket: s.ticket, target: s.target }; },
            WebSocket: H.CountingWebSocket,
            keepaliveMs: 30,
            ...rec.callbacks(),
          });
          client.connect();
        }"""
    )
    page.wait_for_function("H.sockets.length === 1 && H.sockets[0].sent.length >= 4")
    result = harness.evaluate(
        """async () => {
          client.send({ type: "text", uuid: "after-pings", orderNo: "20476365073825144832", content: "still here" });
          const echo = await rec.until((r) => r.messages.find((m) => m.uuid === "after-pings"), 8000, "the echo");
          client.close();
          return { echo, sent: H.sockets[0].sent, types: rec.messages.map((m) => m.type), closes: rec.of("close").length };
        }"""
    )
    assert result["echo"]["id"]
    assert result["sent"][0] == '{"type":"ping"}'
    assert "error" not in result["types"] and result["closes"] == 0


def test_retry_counter_resets_after_a_stable_connection(harness, page):
    """Quick drops grow the backoff; a connection open for resetAfterMs starts it again from backoff(0)."""
    harness.evaluate(
        """() => {
          window.rec = new H.Recorder();
          window.client = new chatrelay.ChatRelayClient({
            relayUrl: "ws://relay.invalid/chat-relay",
            getCredentials: () => ({ key: "k", target: "wss://im.binance.com/chat/x?token=t&clientType=web" }),
            WebSocket: H.FakeSocket,
            backoff: (n) => 10 * 2 ** n,
            resetAfterMs: 150,
            ...rec.callbacks(),
          });
          client.connect();
        }"""
    )
    retries_when_open = harness.evaluate(
        """async () => {
          for (let i = 0; i < 2; i++) {  // open, then lost before resetAfterMs: twice
            const socket = await H.FakeSocket.next();
            socket.open();
            socket.serverClose(1006, "", false);
          }
          (await H.FakeSocket.next()).open();
          return [client.state, client.retries];
        }"""
    )
    assert retries_when_open == ["open", 2]
    page.wait_for_function("client.retries === 0")  # after resetAfterMs open
    result = harness.evaluate(
        """async () => {
          H.FakeSocket.instances[2].serverClose(1014, "upstream connection lost");
          (await H.FakeSocket.next()).open();
          const delays = rec.of("close").map((c) => c.delayMs);
          client.close();
          return delays;
        }"""
    )
    assert result == [10, 20, 10]


def test_credential_failures(harness):
    """A failing getCredentials counts as a failed try; one that throws with `fatal` stops the client."""
    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          let calls = 0;
          const client = new chatrelay.ChatRelayClient({
            relayUrl: "ws://relay.invalid/chat-relay",
            getCredentials: async () => {
              calls += 1;
              if (calls === 1) throw new TypeError("Failed to fetch");
              if (calls === 2) return { key: "k", target: "wss://im.binance.com/chat/x?token=t&clientType=web" };
              throw Object.assign(new Error("logged out"), { fatal: true });
            },
            WebSocket: H.FakeSocket,
            backoff: () => 1,
            ...rec.callbacks(),
          });
          client.connect();
          const socket = await H.FakeSocket.next();
          socket.open();
          socket.serverClose(1012, "service restart");
          const error = await rec.until((r) => r.of("error")[0], 3000, "the error");
          return { closes: rec.of("close"), error, calls, sockets: H.sockets.length, state: client.state };
        }"""
    )
    closes = result["closes"]
    assert closes[0]["willRetry"] is True and "Failed to fetch" in closes[0]["reason"]
    assert closes[1]["code"] == 1012 and closes[1]["willRetry"] is True
    assert closes[2]["willRetry"] is False
    error = result["error"]
    assert error["kind"] == "config" and error["fatal"] is True and "logged out" in error["message"]
    assert result["calls"] == 3 and result["sockets"] == 1 and result["state"] == "closed"


def test_close_cancels_a_pending_retry(harness):
    """close() during the backoff wait: state closed at once, and no further attempt."""
    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          const client = new chatrelay.ChatRelayClient({
            relayUrl: "ws://relay.invalid/chat-relay",
            getCredentials: () => ({ key: "k", target: "wss://im.binance.com/chat/x?token=t&clientType=web" }),
            WebSocket: H.FakeSocket,
            backoff: () => 0,
            ...rec.callbacks(),
          });
          client.connect();
          const socket = await H.FakeSocket.next();
          socket.open();
          socket.serverClose(1001, "going away");
          const pendingBefore = client.retryPending;
          client.close();
          await H.afterTimers(30); // the retry was due after 0 ms: it would have run by now
          return { pendingBefore, pendingAfter: client.retryPending, state: client.state,
                   sockets: H.FakeSocket.instances.length, errors: rec.of("error").length };
        }"""
    )
    assert result == {"pendingBefore": True, "pendingAfter": False, "state": "closed", "sockets": 1, "errors": 0}


def test_open_only_after_the_binance_leg_is_open(harness, page, gated_upstream, demo_relay):
    """The page's open event waits for the upstream: nothing while the upstream handshake is held;
    open once it is answered; and with the fake Binance, the relay has the pair by the open event."""
    harness.evaluate(
        """(target) => {
          window.rec = new H.Recorder();
          window.client = new chatrelay.ChatRelayClient({
            relayUrl: H.config.relayUrl,
            getCredentials: () => ({ key: H.config.token, target }),
            WebSocket: H.CountingWebSocket,
            keepaliveMs: 0,
            ...rec.callbacks(),
          });
          client.connect();
        }""",
        gated_upstream.url(),
    )
    assert gated_upstream.request_seen.wait(10), "the relay never opened the upstream leg"
    assert gated_upstream.error is None, gated_upstream.error
    held = harness.evaluate("({ state: client.state, opens: rec.of('open').length, sockets: H.sockets.length })")
    assert held == {"state": "connecting", "opens": 0, "sockets": 1}
    gated_upstream.release()
    page.wait_for_function("rec.of('open').length === 1")
    assert gated_upstream.answered.is_set()
    harness.evaluate("client.close()")

    result = harness.evaluate(
        """async () => {
          const rec = new H.Recorder();
          let health = null;
          const client = new chatrelay.ChatRelayClient({
            relayUrl: H.config.relayUrl,
            getCredentials: async () => { const s = await H.session(); return { ticket: s.ticket, target: s.target }; },
            onOpen: () => { health = H.getJson("/healthz"); },
            onMessage: (message) => rec.push("message", { message }),
            keepaliveMs: 0,
          });
          client.connect();
          const first = await rec.until((r) => r.of("message")[0], 8000, "the first message");
          const healthAtOpen = await health;
          client.close();
          return { healthAtOpen, first: first.message };
        }"""
    )
    assert result["healthAtOpen"]["status"] == "ok" and result["healthAtOpen"]["pairs"] >= 1
    assert result["first"]["type"] == "statistics"  # pushed by the fake Binance as its leg opened
