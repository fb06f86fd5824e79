// Test helpers loaded (as a module) into a blank page on the relay's origin: window.chatrelay is the
// client module as the relay serves it, window.H the helpers. Every wait here is bounded.
import * as chatrelay from "/chatrelay-client.js";

/** Reject if `promise` has not settled within `ms`. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Every event of a client, with performance.now() times; until() waits for a predicate. */
class Recorder {
  constructor() {
    this.events = [];
    this.messages = [];
    this.waiters = [];
  }

  push(type, detail = {}) {
    this.events.push({ type, t: performance.now(), ...detail });
    this.waiters = this.waiters.filter((check) => !check());
  }

  until(predicate, ms = 8000, what = "a condition") {
    return within(new Promise((resolve) => {
      const check = () => {
        const result = predicate(this);
        if (result) resolve(result);
        return Boolean(result);
      };
      if (!check()) this.waiters.push(check);
    }), ms, what);
  }

  of(type) {
    return this.events.filter((event) => event.type === type);
  }

  /** Options recording every callback of a ChatRelayClient. */
  callbacks() {
    return {
      onMessage: (message, text) => {
        this.messages.push(message);
        this.push("message", { message, text });
      },
      onStateChange: (state, previous) => this.push("state", { state, previous }),
      onOpen: (info) => this.push("open", info),
      onClose: (info) => this.push("close", { ...info }),
      onError: (error) => this.push("error", { ...error, cause: error.cause ? String(error.cause) : undefined }),
    };
  }
}

/** Every WebSocket the page constructs (real or fake), with its URL and construction time. */
const sockets = [];

/** The real WebSocket, recording constructions and what is sent. */
class CountingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    this.record = { url: String(url), t: performance.now(), kind: "real", sent: [] };
    sockets.push(this.record);
  }

  send(data) {
    this.record.sent.push(typeof data === "string" ? data : `<${data.constructor.name}>`);
    super.send(data);
  }
}

/** A real WebSocket whose text messages arrive, every `every`-th one, as Blobs (as binary frames
 * would); `kinds` records how each message was handed to the client. */
function blobbyWebSocket(every = 2, kinds = []) {
  return class BlobbyWebSocket extends CountingWebSocket {
    set onmessage(handler) {
      let count = 0;
      super.onmessage = (event) => {
        count += 1;
        const asBlob = count % every === 0 && typeof event.data === "string";
        kinds.push(asBlob ? "blob" : typeof event.data);
        handler({ data: asBlob ? new Blob([event.data]) : event.data });
      };
    }

    get onmessage() {
      return super.onmessage;
    }
  };
}

/** A scriptable stand-in for WebSocket: the test opens, feeds and closes it. */
class FakeSocket {
  static instances = [];
  static unclaimed = []; // created, not yet taken by next()
  static waiting = []; // resolvers of next()

  constructor(url) {
    this.url = String(url);
    this.readyState = 0;
    this.binaryType = "blob";
    this.sent = [];
    this.closedBy = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.instances.push(this);
    sockets.push({ url: this.url, t: performance.now(), kind: "fake" });
    const waiter = FakeSocket.waiting.shift();
    if (waiter) waiter(this);
    else FakeSocket.unclaimed.push(this);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("FakeSocket: send while not open");
    this.sent.push(data);
  }

  close(code, reason) {
    this.closedBy = { code, reason };
    if (this.readyState >= 2) return;
    const wasOpen = this.readyState === 1;
    this.readyState = 2;
    setTimeout(() => this.serverClose(wasOpen ? code ?? 1005 : 1006, wasOpen ? reason ?? "" : "", wasOpen), 0);
  }

  // test side
  open() {
    this.readyState = 1;
    this.onopen?.({ type: "open" });
  }

  message(data) {
    this.onmessage?.({ type: "message", data });
  }

  serverClose(code, reason = "", wasClean = true) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ type: "close", code, reason, wasClean });
  }

  /** The next FakeSocket constructed (or one constructed and not yet taken). */
  static next(ms = 5000) {
    if (FakeSocket.unclaimed.length) return Promise.resolve(FakeSocket.unclaimed.shift());
    return within(new Promise((resolve) => FakeSocket.waiting.push(resolve)), ms, "a new FakeSocket");
  }
}

/** Resolve after every timer due within `ms` has run (ordering, not a synchronisation sleep). */
function afterTimers(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** GET a JSON document from the relay's origin (the demo API, /healthz). */
async function getJson(path) {
  const response = await within(fetch(path, { cache: "no-store" }), 5000, `GET ${path}`);
  if (!response.ok) throw new Error(`GET ${path}: ${response.status}`);
  return response.json();
}

/** A fresh Binance chat URL and a ticket for it, from the demo's fake backend. */
function session() {
  return getJson("/demo/session");
}

window.chatrelay = chatrelay;
window.H = {
  config: {}, // token and relayUrl, set by the fixture
  within,
  Recorder,
  CountingWebSocket,
  blobbyWebSocket,
  FakeSocket,
  sockets,
  getJson,
  session,
  afterTimers,
};
window.harnessReady = true;
