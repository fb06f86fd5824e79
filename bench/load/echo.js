'use strict';
// The upstream for every relay under test: a WebSocket echo server on `ws`.
// Text comes back as text, binary as binary; pings are answered; closes are echoed.
// No message size limit, no compression. With --tls-cert and --tls-key, wss:// (TLS) instead.
//
//   node echo.js --port PORT [--host 127.0.0.1] [--tls-cert PEM --tls-key PEM]

const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '9001'));

const tlsCert = arg('tls-cert', null);
const options = {
  perMessageDeflate: false,
  maxPayload: 0, // unlimited: the 256 MiB message must come back
  clientTracking: false,
};
const listening = () => process.stdout.write(`echo listening on ${host}:${port}${tlsCert ? ' (TLS)' : ''}\n`);
let wss;
if (tlsCert) {
  const server = https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(arg('tls-key')) });
  wss = new WebSocketServer({ server, ...options });
  server.listen({ host, port, backlog: 4096 }, listening);
} else {
  wss = new WebSocketServer({ host, port, backlog: 4096, ...options });
  wss.on('listening', listening);
}

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

process.on('SIGTERM', () => process.exit(0));
