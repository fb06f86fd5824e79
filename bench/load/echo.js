'use strict';
// The upstream for every relay under test: a WebSocket echo server on `ws`.
// Text comes back as text, binary as binary; pings are answered; closes are echoed.
// No message size limit, no compression. With --tls-cert and --tls-key, wss:// (TLS) instead,
// on each --host given (the addresses a name such as localhost has).
//
//   node echo.js --port PORT [--host 127.0.0.1] [--tls-cert PEM --tls-key PEM [--host ::1 ...]]

const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const hosts = process.argv.flatMap((value, i) => (process.argv[i - 1] === '--host' ? [value] : []));
if (hosts.length === 0) hosts.push('127.0.0.1');
const host = hosts.join(', ');
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
  const tls = { cert: fs.readFileSync(tlsCert), key: fs.readFileSync(arg('tls-key')) };
  wss = new WebSocketServer({ noServer: true, ...options });
  let waiting = hosts.length;
  for (const address of hosts) {
    const server = https.createServer(tls);
    server.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    server.listen({ host: address, port, backlog: 4096 }, () => {
      waiting -= 1;
      if (waiting === 0) listening();
    });
  }
} else {
  wss = new WebSocketServer({ host: hosts[0], port, backlog: 4096, ...options });
  wss.on('listening', listening);
}

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

process.on('SIGTERM', () => process.exit(0));
