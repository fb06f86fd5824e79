'use strict';
// The baseline chatrelay replaces: a small WebSocket relay on Node.js and `ws`, as first planned.
//
//   BINANCE_PROXY_TOKEN=... node relay.js --port PORT [--host 127.0.0.1]
//       [--allow-prefix ws://127.0.0.1:] [--max-message-size BYTES] [--connect-timeout S]
//       [--ping-interval S]
//
// The browser opens ws://HOST:PORT/ANY/PATH?key=TOKEN&target=URL-ENCODED-TARGET. Like chatrelay:
// - a wrong key, a bad target or a target not allowed completes the handshake, then closes with
//   4401, 4400 or 4403;
// - each browser gets its own upstream `ws` client; the browser's 101 is sent only once the
//   upstream is open, and an upstream that cannot be opened gives 1014 with a reason;
// - text stays text, binary stays binary; pings and pongs pass through (no automatic pongs:
//   the other side answers);
// - a close code and reason are forwarded (no code stays no code); an upstream that drops gives
//   the browser 1014, a browser that drops gives the upstream 1001; a message over the limit
//   closes both legs with 1009;
// - each leg gets the relay's own keepalive ping (dead-peer detection), whose pong stops here;
// - one log line per connection when it ends.
// Unlike chatrelay, messages are relayed whole (`ws` delivers complete messages only) and there is
// no flow control between the legs.

const http = require('http');
const crypto = require('crypto');
const { WebSocket, WebSocketServer } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '8080'));
const allowPrefixes = [];
for (let i = 0; i < process.argv.length; i++) {
  if (process.argv[i] === '--allow-prefix') allowPrefixes.push(process.argv[i + 1]);
}
if (allowPrefixes.length === 0) allowPrefixes.push('wss://im.binance.com:443/chat/');
const maxMessageSize = Number(arg('max-message-size', String(1 << 20)));
const connectTimeout = Number(arg('connect-timeout', '10')) * 1000;
const pingInterval = Number(arg('ping-interval', '30')) * 1000;
const token = (process.env.BINANCE_PROXY_TOKEN || '').trim();
if (!token) {
  process.stderr.write('no relay token: set BINANCE_PROXY_TOKEN\n');
  process.exit(2);
}
const tokenBuffer = Buffer.from(token);

function keyOk(key) {
  const given = Buffer.from(key);
  return given.length === tokenBuffer.length && crypto.timingSafeEqual(given, tokenBuffer);
}

function normalised(target) {
  // scheme://host:port/path with the default port made explicit, for the prefix check.
  const url = new URL(target);
  const defaultPort = url.protocol === 'wss:' ? '443' : '80';
  return `${url.protocol}//${url.hostname}:${url.port || defaultPort}${url.pathname}${url.search}`;
}

function allowed(target) {
  const normal = normalised(target);
  return allowPrefixes.some((prefix) => normal.startsWith(prefix));
}

const OWN_PING = Buffer.from('node-relay-keepalive');
const legs = new Set(); // every open leg, for the keepalive

const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: maxMessageSize,
  autoPong: false,
  clientTracking: false,
  handleProtocols: (protocols, req) => req.upstreamProtocol || false,
});

function log(conn, outcome) {
  const seconds = ((Date.now() - conn.started) / 1000).toFixed(3);
  process.stdout.write(
    `${conn.peer} ${outcome} after ${seconds}s; target ${conn.origin}; ` +
      `close browser ${conn.browserClose} upstream ${conn.upstreamClose}; ` +
      `browser->upstream ${conn.up} msgs; upstream->browser ${conn.down} msgs\n`,
  );
}

function refuse(req, socket, head, conn, code, reason, outcome) {
  wss.handleUpgrade(req, socket, head, (browser) => {
    browser.on('error', () => {});
    browser.on('close', (closeCode) => {
      conn.browserClose = closeCode;
      log(conn, outcome);
    });
    browser.close(code, reason);
  });
}

function keepalive(leg) {
  leg.alive = true;
  legs.add(leg);
}

// `ws` error codes whose close code the other leg gets too (as chatrelay does).
const KEPT_CODES = { WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009, WS_ERR_INVALID_UTF8: 1007 };

function forwardClose(to, code, reason) {
  if (to.readyState !== WebSocket.OPEN) return;
  if (code === 1005) to.close();
  else to.close(code, reason);
}

function join(conn, browser, upstream) {
  for (const [from, to, dir] of [
    [browser, upstream, 'up'],
    [upstream, browser, 'down'],
  ]) {
    from.on('message', (data, isBinary) => {
      conn[dir] += 1;
      if (to.readyState === WebSocket.OPEN) to.send(data, { binary: isBinary });
    });
    from.on('ping', (data) => {
      if (to.readyState === WebSocket.OPEN) to.ping(data);
    });
    from.on('pong', (data) => {
      if (data.equals(OWN_PING)) from.alive = true;
      else if (to.readyState === WebSocket.OPEN) to.pong(data);
    });
    from.on('error', (error) => {
      // A protocol violation or a message over the limit: `ws` closes `from` with the code.
      if (!conn.closing && to.readyState === WebSocket.OPEN) {
        conn.closing = true;
        const mapped = KEPT_CODES[error.code] || (to === browser ? 1014 : 1001);
        to.close(mapped, String(error.message).slice(0, 123));
      }
    });
  }
  browser.on('close', (code, reason) => {
    legs.delete(browser);
    conn.browserClose = code;
    if (!conn.closing) {
      conn.closing = true;
      conn.outcome = code === 1006 ? 'browser_lost' : 'browser_closed';
      if (code === 1006) forwardClose(upstream, 1001, 'browser went away');
      else forwardClose(upstream, code, reason);
    }
    if (upstream.readyState === WebSocket.CLOSED) log(conn, conn.outcome);
  });
  upstream.on('close', (code, reason) => {
    legs.delete(upstream);
    conn.upstreamClose = code;
    if (!conn.closing) {
      conn.closing = true;
      conn.outcome = code === 1006 ? 'upstream_lost' : 'upstream_closed';
      if (code === 1006) forwardClose(browser, 1014, 'upstream connection lost');
      else forwardClose(browser, code, reason);
    }
    if (browser.readyState === WebSocket.CLOSED) log(conn, conn.outcome);
  });
  keepalive(browser);
  keepalive(upstream);
}

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket only\n');
});

server.on('upgrade', (req, socket, head) => {
  const conn = {
    peer: `${socket.remoteAddress}:${socket.remotePort}`,
    started: Date.now(),
    origin: '-',
    browserClose: '-',
    upstreamClose: '-',
    up: 0,
    down: 0,
    closing: false,
    outcome: 'closed',
  };
  socket.on('error', () => {});
  let params;
  try {
    params = new URL(req.url, 'http://relay').searchParams;
  } catch (error) {
    socket.destroy();
    return;
  }
  const keys = params.getAll('key');
  if (keys.length !== 1 || !keyOk(keys[0])) {
    refuse(req, socket, head, conn, 4401, 'invalid relay key', 'bad_key');
    return;
  }
  const targets = params.getAll('target');
  let target;
  try {
    if (targets.length !== 1) throw new Error('exactly one target is required');
    target = new URL(targets[0]);
    if (target.protocol !== 'ws:' && target.protocol !== 'wss:') throw new Error('not a ws(s) URL');
  } catch (error) {
    refuse(req, socket, head, conn, 4400, `bad target: ${error.message}`.slice(0, 123), 'bad_target');
    return;
  }
  if (!allowed(targets[0])) {
    refuse(req, socket, head, conn, 4403, 'target not allowed', 'forbidden_target');
    return;
  }
  conn.origin = `${target.protocol}//${target.host}`;
  const protocols = (req.headers['sec-websocket-protocol'] || '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  const upstream = new WebSocket(targets[0], protocols, {
    perMessageDeflate: false,
    maxPayload: maxMessageSize,
    autoPong: false,
    handshakeTimeout: connectTimeout,
    headers: { 'User-Agent': 'node-relay' },
  });
  let settled = false;
  const browserGone = () => {
    if (!settled) {
      settled = true;
      upstream.terminate();
    }
  };
  socket.once('close', browserGone);
  upstream.once('open', () => {
    if (settled) return;
    settled = true;
    socket.removeListener('close', browserGone);
    req.upstreamProtocol = upstream.protocol || false;
    wss.handleUpgrade(req, socket, head, (browser) => join(conn, browser, upstream));
  });
  const failed = (reason) => {
    if (settled) return;
    settled = true;
    socket.removeListener('close', browserGone);
    upstream.terminate();
    refuse(req, socket, head, conn, 1014, reason, 'upstream_failed');
  };
  upstream.on('unexpected-response', (request, response) => {
    failed(`upstream refused the WebSocket handshake (HTTP ${response.statusCode})`);
  });
  upstream.on('error', (error) => {
    if (error.code === 'ECONNREFUSED') failed('upstream refused the connection');
    else if (/timed out/i.test(error.message)) failed('upstream connect timed out');
    else failed('upstream unreachable');
  });
});

if (pingInterval > 0) {
  setInterval(() => {
    for (const leg of legs) {
      if (!leg.alive) {
        leg.terminate(); // dead peer
        continue;
      }
      leg.alive = false;
      leg.ping(OWN_PING);
    }
  }, pingInterval).unref();
}

server.listen({ host, port, backlog: 511 }, () => {
  process.stdout.write(`node relay listening on ${host}:${port} (ws ${require('ws/package.json').version})\n`);
});

process.on('SIGTERM', () => {
  for (const leg of legs) leg.close(1001, 'relay shutting down');
  server.close();
  setTimeout(() => process.exit(0), 1000).unref();
});
