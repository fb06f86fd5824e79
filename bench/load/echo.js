'use strict';
// The upstream for every relay under test: a WebSocket echo server on `ws`.
// Text comes back as text, binary as binary; pings are answered; closes are echoed.
// No message size limit, no compression.
//
//   node echo.js --port PORT [--host 127.0.0.1]

const { WebSocketServer } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '9001'));

const wss = new WebSocketServer({
  host,
  port,
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 0, // unlimited: the 256 MiB message must come back
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

wss.on('listening', () => {
  process.stdout.write(`echo listening on ${host}:${port}\n`);
});

process.on('SIGTERM', () => process.exit(0));
