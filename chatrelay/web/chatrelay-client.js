/**
 * chatrelay-client.js: a framework-free browser client for the chatrelay WebSocket relay.
 *
 * The relay joins each browser WebSocket to its own Binance C2C chat WebSocket. This module
 * builds the relay URL (with the relay key or a ticket), connects, exposes the state
 * (`connecting`, `open`, `closed`) and `send`, sends a JSON keepalive (`{"type":"ping"}` every
 * 30 s), and reconnects with a capped exponential backoff, reading the close codes:
 *
 * | close code                  | what the client does                                            |
 * |-----------------------------|-----------------------------------------------------------------|
 * | 4400, 4401, 4403            | no retry; `onError({kind: "refused", code, reason, fatal: true})` |
 * | 1001, 1006, 1011-1014       | retry after `backoff(n)` ms, at most `maxRetries` times          |
 * | connect timeout             | counts as a failed try (reported as code 1006, `timedOut: true`) |
 * | anything else (1000, 1008…) | no retry; `onError({kind: "closed", code, reason, fatal: false})` |
 *
 * Binance chat tokens are single use, so every (re)connect asks `getCredentials()` for a fresh
 * target (and, with tickets, a fresh ticket).
 *
 * The relay answers the browser's WebSocket handshake only once its Binance leg is open, so the
 * `open` state means "Binance is connected" -- except that the relay also completes the handshake
 * to refuse a connection (4400/4401/4403, 1014, 1013) and closes it at once: such a connection is
 * `open` for an instant. The retry counter is therefore reset only after a connection has stayed
 * open for `resetAfterMs` (30 s), not on every open.
 *
 * Served by the relay at `/chatrelay-client.js` (under any path prefix), or copy this file.
 *
 * @example
 * import { ChatRelayClient } from "/chatrelay-client.js";
 * const client = new ChatRelayClient({
 *   relayUrl: "wss://example.com/chat-relay",
 *   getCredentials: async () => {
 *     const c = await (await fetch("/api/chat-credentials")).json();
 *     return { ticket: c.ticket, target: c.target };
 *   },
 *   onMessage: (message) => console.log(message),
 *   onError: (error) => console.warn(error.message),
 * });
 * client.connect();
 * client.send({ type: "text", orderNo: "…", content: "hi", uuid: String(Date.now()), clientType: "web" });
 *
 * @module chatrelay-client
 */

/** @typedef {"connecting" | "open" | "closed"} ChatRelayState */

/**
 * What the relay needs for one connection. Exactly one of `key` and `ticket`.
 * @typedef {object} ChatRelayCredentials
 * @property {string} [key] The relay key (the relay's BINANCE_PROXY_TOKEN).
 * @property {string} [ticket] A ticket minted by the backend for exactly `target`.
 * @property {string} target The Binance chat URL,
 *   `${chatWssUrl}/${listenKey}?token=${listenToken}&clientType=web` (a fresh token every time).
 * @property {string} [relayUrl] Overrides the client's `relayUrl` for this connection.
 */

/**
 * @typedef {object} ChatRelayAttemptInfo
 * @property {number} attempt 1 for the first connection attempt of a run, 2 for the next, …
 * @property {number} retry 0 for a first attempt, n for the n-th retry in a row.
 */

/**
 * A connection that ended.
 * @typedef {object} ChatRelayCloseInfo
 * @property {number} code The close code (1006 when there was no closing handshake or the
 *   connect timed out; 1005 when the close carried no code).
 * @property {string} reason The close reason.
 * @property {boolean} wasClean Whether the closing handshake completed.
 * @property {boolean} timedOut True when the client gave up waiting for `open` (connect timeout).
 * @property {boolean} fatal True for 4400/4401/4403: the relay refused, retrying cannot help.
 * @property {boolean} willRetry Whether a reconnect is scheduled.
 * @property {number} [retry] When `willRetry`: which retry in a row this will be (1..maxRetries).
 * @property {number} [delayMs] When `willRetry`: the delay before it, `backoff(retry - 1)`.
 * @property {number} attempt The attempt that ended (see ChatRelayAttemptInfo).
 */

/**
 * Why the client stopped (it will not reconnect by itself; call `connect()` again to restart).
 * @typedef {object} ChatRelayError
 * @property {"refused" | "closed" | "gave-up" | "config"} kind `refused`: 4400/4401/4403;
 *   `closed`: a close code that is not retried; `gave-up`: `maxRetries` retries failed;
 *   `config`: a bad credentials object, or an error thrown by `getCredentials` with `fatal = true`.
 * @property {boolean} fatal True when retrying cannot help (refused, config).
 * @property {number} [code] The close code, when a close ended the client.
 * @property {string} [reason] The close reason.
 * @property {string} message A sentence for the user.
 * @property {number} attempts Connection attempts made in this run.
 * @property {*} [cause] The error thrown by `getCredentials` or `buildRelayUrl`, if any.
 */

/**
 * @typedef {object} ChatRelayOptions
 * @property {string} [relayUrl] The relay's base URL, e.g. `wss://example.com/chat-relay`
 *   (http(s) and page-relative URLs are turned into ws(s) URLs). Needed unless
 *   `getCredentials` returns `relayUrl`.
 * @property {(info: ChatRelayAttemptInfo) => Promise<ChatRelayCredentials> | ChatRelayCredentials} getCredentials
 *   Called before every connection attempt. A throw counts as a failed try (and is retried),
 *   unless the error has `fatal = true`.
 * @property {(message: *, text: string) => void} [onMessage] Each message, in order: `message` is
 *   `JSON.parse(text)`, or `text` itself when it is not JSON. Text, Blob and ArrayBuffer payloads
 *   are all decoded as UTF-8 text.
 * @property {(state: ChatRelayState, previous: ChatRelayState) => void} [onStateChange]
 * @property {(info: ChatRelayAttemptInfo) => void} [onOpen] The socket opened (the relay's
 *   Binance leg is open).
 * @property {(info: ChatRelayCloseInfo) => void} [onClose] A connection (or attempt) ended.
 * @property {(error: ChatRelayError) => void} [onError] The client stopped for a reason other
 *   than `close()`.
 * @property {number} [keepaliveMs=30000] Interval of the JSON keepalive while open (0: none).
 * @property {*} [keepaliveMessage={type: "ping"}] What the keepalive sends (JSON-encoded unless a string).
 * @property {number} [connectTimeoutMs=10000] From the start of an attempt (credentials included)
 *   to `open`; beyond it the attempt is abandoned and counts as a failed try.
 * @property {number} [maxRetries=5] Retries in a row before giving up.
 * @property {(n: number) => number} [backoff=defaultBackoff] Delay in ms before retry n+1 (n from 0).
 * @property {number} [resetAfterMs=30000] A connection open this long resets the retry counter.
 * @property {Iterable<number>} [retryCodes=RETRY_CLOSE_CODES] Close codes that are retried.
 * @property {Iterable<number>} [fatalCodes=FATAL_CLOSE_CODES] Close codes that stop the client as refused.
 * @property {typeof WebSocket} [WebSocket=globalThis.WebSocket] The WebSocket implementation (for tests).
 */

/** Close codes after which the client does not retry: the relay refused the request. */
export const FATAL_CLOSE_CODES = Object.freeze([4400, 4401, 4403]);

/** Close codes after which the client retries (going away, abnormal, server errors, bad gateway). */
export const RETRY_CLOSE_CODES = Object.freeze([1001, 1006, 1011, 1012, 1013, 1014]);

/** What the close codes mean. @type {Readonly<Record<number, string>>} */
export const CLOSE_CODE_MEANINGS = Object.freeze({
  1000: "closed normally",
  1001: "going away (relay or Binance shutting down)",
  1005: "closed without a code",
  1006: "connection lost",
  1009: "message too big",
  1011: "server error",
  1012: "service restart",
  1013: "relay at capacity, try again later",
  1014: "Binance connection failed or lost",
  4400: "bad target (the Binance chat URL)",
  4401: "invalid relay key or ticket",
  4403: "target or origin not allowed by the relay",
});

const DEFAULT_KEEPALIVE_MESSAGE = Object.freeze({ type: "ping" });

/**
 * The default retry delay: `min(1000 * 2^n, 30000)` ms before retry n+1.
 * @param {number} n Retries already made in a row (0 before the first retry).
 * @returns {number}
 */
export function defaultBackoff(n) {
  return Math.min(1000 * 2 ** n, 30000);
}

/**
 * The Binance chat URL from the fields of `retrieveChatCredential`.
 * @param {{chatWssUrl: string, listenKey: string, listenToken: string}} credential
 * @returns {string} `${chatWssUrl}/${listenKey}?token=${listenToken}&clientType=web`
 */
export function binanceChatTarget({ chatWssUrl, listenKey, listenToken }) {
  const base = String(chatWssUrl).replace(/\/+$/, "");
  return `${base}/${encodeURIComponent(listenKey)}?token=${encodeURIComponent(listenToken)}&clientType=web`;
}

/**
 * The relay URL for one connection: `${relayUrl}/?key=…&target=…` or `…/?ticket=…&target=…`.
 * @param {string} relayUrl e.g. `wss://example.com/chat-relay` (http(s):// and, in a page,
 *   relative URLs such as `/chat-relay` are accepted and turned into ws(s)://).
 * @param {ChatRelayCredentials} credentials
 * @returns {string}
 */
export function buildRelayUrl(relayUrl, credentials) {
  const { key, ticket, target } = credentials || {};
  const hasKey = key !== undefined && key !== null;
  const hasTicket = ticket !== undefined && ticket !== null;
  if (hasKey === hasTicket) {
    throw new TypeError("chatrelay: give exactly one of `key` and `ticket`");
  }
  if (typeof target !== "string" || !target) {
    throw new TypeError("chatrelay: `target` (the Binance chat URL) is required");
  }
  if (!relayUrl) {
    throw new TypeError("chatrelay: `relayUrl` is required");
  }
  const base = typeof location !== "undefined" ? location.href : undefined;
  const url = new URL(relayUrl, base);
  if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol !== "wss:" && url.protocol !== "ws:") {
    throw new TypeError(`chatrelay: relayUrl must be a ws(s) or http(s) URL, not ${url.protocol}`);
  }
  const path = url.pathname.replace(/\/+$/, "");
  const credential = hasKey ? `key=${encodeURIComponent(String(key))}` : `ticket=${encodeURIComponent(String(ticket))}`;
  return `${url.protocol}//${url.host}${path}/?${credential}&target=${encodeURIComponent(target)}`;
}

/**
 * A one-line description of a close, e.g. `4401 invalid relay key or ticket`.
 * @param {number} code
 * @param {string} [reason]
 * @returns {string}
 */
export function describeClose(code, reason) {
  const text = reason || CLOSE_CODE_MEANINGS[code] || "";
  return text ? `${code} ${text}` : String(code);
}

/**
 * The text of a message payload: a string as is, a Blob read (asynchronously), bytes decoded.
 * @param {*} data
 * @returns {Promise<string> | string}
 */
function decodeText(data) {
  if (typeof data === "string") return data;
  if (typeof Blob !== "undefined" && data instanceof Blob) return data.text();
  if (data && typeof data.text === "function" && typeof data.size === "number") return data.text();
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return String(data);
}

/**
 * Call a user callback; an exception it throws is reported (uncaught) but does not break the client.
 * @template {unknown[]} A
 * @param {((...args: A) => unknown) | undefined} callback
 * @param {A} args
 */
function safely(callback, ...args) {
  if (typeof callback !== "function") return;
  try {
    callback(...args);
  } catch (error) {
    setTimeout(() => {
      throw error;
    }, 0);
  }
}

/** @param {unknown} error @returns {string} */
function errorText(error) {
  return error instanceof Error ? error.message : String(error);
}

/**
 * How an attempt ended, before the retry decision.
 * @typedef {object} Ending
 * @property {number} code
 * @property {string} reason
 * @property {boolean} wasClean
 * @property {boolean} timedOut
 * @property {boolean} [failed] The attempt failed before a socket existed (credentials, constructor).
 */

/**
 * One connection attempt.
 * @typedef {object} Attempt
 * @property {WebSocket | null} ws
 * @property {ChatRelayAttemptInfo} info
 * @property {ReturnType<typeof setTimeout>[]} timers The connect timeout, then the retry-counter reset.
 * @property {ReturnType<typeof setInterval> | null} keepalive
 * @property {Promise<void>} queue Deliveries waiting for a Blob to be read, in order.
 * @property {number} pending How many jobs `queue` holds.
 */

/**
 * One browser's connection to Binance chat through the relay, with keepalive and reconnects.
 */
export class ChatRelayClient {
  /** @param {ChatRelayOptions} options */
  constructor(options) {
    if (!options || typeof options.getCredentials !== "function") {
      throw new TypeError("chatrelay: options.getCredentials (an async function) is required");
    }
    const o = options;
    /** The relay's base URL (see `buildRelayUrl`). @type {string | undefined} */
    this.relayUrl = o.relayUrl;
    /** @type {ChatRelayOptions["getCredentials"]} */
    this.getCredentials = o.getCredentials;
    /** @type {ChatRelayOptions["onMessage"]} */
    this.onMessage = o.onMessage;
    /** @type {ChatRelayOptions["onStateChange"]} */
    this.onStateChange = o.onStateChange;
    /** @type {ChatRelayOptions["onOpen"]} */
    this.onOpen = o.onOpen;
    /** @type {ChatRelayOptions["onClose"]} */
    this.onClose = o.onClose;
    /** @type {ChatRelayOptions["onError"]} */
    this.onError = o.onError;
    /** @type {number} */
    this.keepaliveMs = o.keepaliveMs ?? 30000;
    /** @type {unknown} */
    this.keepaliveMessage = o.keepaliveMessage === undefined ? DEFAULT_KEEPALIVE_MESSAGE : o.keepaliveMessage;
    /** @type {number} */
    this.connectTimeoutMs = o.connectTimeoutMs ?? 10000;
    /** @type {number} */
    this.maxRetries = o.maxRetries ?? 5;
    /** @type {(n: number) => number} */
    this.backoff = o.backoff ?? defaultBackoff;
    /** @type {number} */
    this.resetAfterMs = o.resetAfterMs ?? 30000;
    /** @type {Set<number>} */
    this.retryCodes = new Set(o.retryCodes ?? RETRY_CLOSE_CODES);
    /** @type {Set<number>} */
    this.fatalCodes = new Set(o.fatalCodes ?? FATAL_CLOSE_CODES);
    /** @type {typeof WebSocket | undefined} */
    this.WebSocket = o.WebSocket;
    /** The last connection (attempt) that ended. @type {ChatRelayCloseInfo | null} */
    this.lastClose = null;
    /** Why the client last stopped. @type {ChatRelayError | null} */
    this.lastError = null;

    /** @private @type {ChatRelayState} */
    this._state = "closed";
    /** @private */
    this._attempts = 0;
    /** @private */
    this._retries = 0;
    /** @private @type {Attempt | null} */
    this._conn = null;
    /** @private @type {ReturnType<typeof setTimeout> | null} */
    this._retryTimer = null;
    /** @private Bumped by connect() and close(), to notice them from inside callbacks. */
    this._run = 0;
  }

  /** @returns {ChatRelayState} `connecting` (also while waiting to retry), `open` or `closed`. */
  get state() {
    return this._state;
  }

  /** @returns {number} Connection attempts made since the last `connect()`. */
  get attempts() {
    return this._attempts;
  }

  /** @returns {number} Failed tries in a row (reset by a connection open for `resetAfterMs`). */
  get retries() {
    return this._retries;
  }

  /** @returns {boolean} Whether a reconnect is scheduled. */
  get retryPending() {
    return this._retryTimer !== null;
  }

  /**
   * Start connecting (does nothing unless the state is `closed`). Resets the retry counter.
   * @returns {this}
   */
  connect() {
    if (this._state !== "closed") return this;
    this._run += 1;
    this._attempts = 0;
    this._retries = 0;
    this.lastError = null;
    this._setState("connecting");
    this._attempt();
    return this;
  }

  /**
   * Send a message if the connection is open. Objects are JSON-encoded; strings, Blobs and
   * ArrayBuffers are sent as they are.
   * @param {unknown} message
   * @returns {boolean} Whether it was handed to the socket (false unless `open`).
   */
  send(message) {
    const ws = this._conn && this._conn.ws;
    if (this._state !== "open" || !ws || ws.readyState !== 1) return false;
    if (
      typeof message === "string" ||
      message instanceof ArrayBuffer ||
      ArrayBuffer.isView(message) ||
      (typeof Blob !== "undefined" && message instanceof Blob)
    ) {
      ws.send(/** @type {string | ArrayBuffer | ArrayBufferView<ArrayBuffer> | Blob} */ (message));
    } else {
      ws.send(JSON.stringify(message));
    }
    return true;
  }

  /**
   * Stop: close the connection (if any), cancel a scheduled retry, and go to `closed` at once.
   * No `onClose`/`onError` follows. `connect()` starts again.
   * @param {number} [code=1000] A close code the page may send (1000 or 3000-4999).
   * @param {string} [reason=""]
   */
  close(code = 1000, reason = "") {
    this._run += 1;
    this._cancelRetry();
    const conn = this._conn;
    this._conn = null;
    if (conn) {
      this._teardown(conn);
      const ws = conn.ws;
      if (ws && ws.readyState < 2) {
        try {
          ws.close(code, reason);
        } catch (error) {
          ws.close(); // a code the browser does not allow
        }
      }
    }
    this._setState("closed");
  }

  // -- internals --------------------------------------------------------------------------

  /** @private @param {ChatRelayState} state */
  _setState(state) {
    const previous = this._state;
    if (state === previous) return;
    this._state = state;
    safely(this.onStateChange, state, previous);
  }

  /** @private */
  _cancelRetry() {
    if (this._retryTimer !== null) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }

  /** @private */
  async _attempt() {
    this._retryTimer = null;
    this._attempts += 1;
    const info = { attempt: this._attempts, retry: this._retries };
    /** @type {Attempt} */
    const conn = { ws: null, info, timers: [], keepalive: null, queue: Promise.resolve(), pending: 0 };
    this._conn = conn;
    this._setState("connecting");
    if (this.connectTimeoutMs > 0) {
      conn.timers.push(setTimeout(() => this._timedOut(conn), this.connectTimeoutMs));
    }
    /** @type {ChatRelayCredentials} */
    let credentials;
    try {
      credentials = await this.getCredentials({ ...info });
    } catch (error) {
      if (this._conn !== conn) return; // closed or timed out meanwhile
      const failed = { code: 1006, reason: `credentials: ${errorText(error)}`, wasClean: false, timedOut: false,
        failed: true };
      const fatal = Boolean(error && typeof error === "object" && "fatal" in error && error.fatal);
      this._ended(conn, failed, fatal, error);
      return;
    }
    if (this._conn !== conn) return;
    let url;
    try {
      url = buildRelayUrl((credentials && credentials.relayUrl) || this.relayUrl || "", credentials);
    } catch (error) {
      this._ended(conn, { code: 1006, reason: errorText(error), wasClean: false, timedOut: false }, true, error);
      return;
    }
    const Impl = this.WebSocket || globalThis.WebSocket;
    /** @type {WebSocket} */
    let ws;
    try {
      ws = new Impl(url);
    } catch (error) {
      const failed = { code: 1006, reason: errorText(error), wasClean: false, timedOut: false, failed: true };
      this._ended(conn, failed, false, error);
      return;
    }
    conn.ws = ws;
    try {
      ws.binaryType = "arraybuffer"; // decoded synchronously; Blobs (from other implementations) work too
    } catch (error) {
      /* an implementation without binaryType */
    }
    ws.onopen = () => this._opened(conn);
    ws.onmessage = (event) => this._received(conn, event.data);
    ws.onclose = (event) =>
      this._inOrder(conn, () =>
        this._ended(conn, { code: event.code, reason: event.reason || "", wasClean: Boolean(event.wasClean),
          timedOut: false }));
    ws.onerror = () => {}; // a close event always follows
  }

  /** @private @param {Attempt} conn */
  _opened(conn) {
    if (this._conn !== conn) return;
    conn.timers.forEach(clearTimeout);
    conn.timers = [];
    if (this.resetAfterMs >= 0) {
      conn.timers.push(setTimeout(() => {
        if (this._conn === conn) this._retries = 0;
      }, this.resetAfterMs));
    }
    if (this.keepaliveMs > 0 && this.keepaliveMessage !== null) {
      conn.keepalive = setInterval(() => {
        if (this._conn === conn) this.send(this.keepaliveMessage);
      }, this.keepaliveMs);
    }
    this._setState("open");
    safely(this.onOpen, { ...conn.info });
  }

  /**
   * Run `job` once every message already received on `conn` has been delivered.
   * @private
   * @param {Attempt} conn
   * @param {() => void} job
   */
  _inOrder(conn, job) {
    if (conn.pending === 0) {
      job();
      return;
    }
    conn.pending += 1;
    conn.queue = conn.queue.then(job).finally(() => {
      conn.pending -= 1;
    });
  }

  /** @private @param {Attempt} conn @param {unknown} data */
  _received(conn, data) {
    if (this._conn !== conn) return;
    const text = decodeText(data);
    if (typeof text === "string" && conn.pending === 0) {
      this._deliver(conn, text);
      return;
    }
    conn.pending += 1;
    conn.queue = conn.queue
      .then(() => text)
      .then(
        (decoded) => this._deliver(conn, decoded),
        (error) => console.warn("chatrelay: could not read a message", error),
      )
      .finally(() => {
        conn.pending -= 1;
      });
  }

  /** @private @param {Attempt} conn @param {string} text */
  _deliver(conn, text) {
    if (this._conn !== conn) return; // close() was called meanwhile
    /** @type {unknown} */
    let message = text;
    try {
      message = JSON.parse(text);
    } catch (error) {
      /* not JSON: deliver the text */
    }
    safely(this.onMessage, message, text);
  }

  /** @private @param {Attempt} conn */
  _timedOut(conn) {
    if (this._conn !== conn || this._state === "open") return;
    const ws = conn.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch (error) {
        /* already closing */
      }
    }
    this._ended(conn, { code: 1006, reason: `no connection within ${this.connectTimeoutMs} ms`,
      wasClean: false, timedOut: true });
  }

  /** @private @param {Attempt} conn */
  _teardown(conn) {
    conn.timers.forEach(clearTimeout);
    conn.timers = [];
    if (conn.keepalive !== null) clearInterval(conn.keepalive);
    conn.keepalive = null;
  }

  /**
   * An attempt ended: retry, or stop and say why.
   * @private
   * @param {Attempt} conn
   * @param {Ending} ending
   * @param {boolean} [configError] Not retryable: a bad credentials object, or a fatal getCredentials error.
   * @param {unknown} [cause]
   */
  _ended(conn, ending, configError = false, cause = undefined) {
    if (this._conn !== conn) return;
    this._teardown(conn);
    this._conn = null;
    const { failed, ...close } = ending;
    const fatal = configError || this.fatalCodes.has(close.code);
    const retryable = !fatal && (close.timedOut || Boolean(failed) || this.retryCodes.has(close.code));
    /** @type {ChatRelayCloseInfo} */
    const info = { ...close, fatal, willRetry: false, attempt: conn.info.attempt };
    /** @type {ChatRelayError | null} */
    let error = null;
    const attempts = this._attempts;
    const { code, reason } = close;
    if (retryable && this._retries < this.maxRetries) {
      info.delayMs = Math.max(0, Number(this.backoff(this._retries)) || 0);
      this._retries += 1;
      info.retry = this._retries;
      info.willRetry = true;
      this._retryTimer = setTimeout(() => this._attempt(), info.delayMs);
    } else if (configError) {
      error = { kind: "config", fatal: true, message: `Cannot connect: ${reason}`, attempts };
    } else if (fatal) {
      error = { kind: "refused", fatal: true, code, reason, attempts,
        message: `The relay refused the connection: ${describeClose(code, reason)}` };
    } else if (retryable) {
      error = { kind: "gave-up", fatal: false, code, reason, attempts,
        message: `Gave up after ${this._retries} retries: ${describeClose(code, reason)}` };
    } else {
      error = { kind: "closed", fatal: false, code, reason, attempts,
        message: `Connection closed: ${describeClose(code, reason)}` };
    }
    if (error && cause !== undefined) error.cause = cause;
    this.lastClose = info;
    const run = this._run;
    safely(this.onClose, info);
    if (run !== this._run) return; // onClose called close() or connect()
    if (error) {
      this.lastError = error;
      this._setState("closed");
      safely(this.onError, error);
    } else {
      this._setState("connecting");
    }
  }
}

export default ChatRelayClient;
