'use strict';
// Correctness smoke check of a relay in front of the echo (bench/load/echo.js):
// message sizes around every frame-length boundary, text and binary, multi-byte and invalid
// UTF-8, fragmented messages, bursts that arrive in one TCP read, pings, close codes.
//
//   node check.js RELAY_URL
//
// Prints one line per check and "N passed, N failed".

const { WebSocket } = require('ws');

const url = process.argv[2];
let passed = 0;
let failed = 0;

function report(name, ok, detail = '') {
  if (ok) passed += 1;
  else failed += 1;
  process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}\n`);
}

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 0 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function next(ws, event, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} in ${timeout} ms`)), timeout);
    ws.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

function pattern(size, seed) {
  const buffer = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buffer[i] = (i * 31 + seed) & 0xff;
  return buffer;
}

async function echoes(ws, payload, binary, name) {
  const reply = next(ws, 'message');
  ws.send(payload, { binary });
  const [data, isBinary] = await reply;
  report(name, isBinary === binary && Buffer.compare(data, Buffer.from(payload)) === 0,
    `${data.length} B ${isBinary ? 'binary' : 'text'}`);
}

(async () => {
  const ws = await open();
  const sizes = [0, 1, 2, 3, 4, 5, 7, 124, 125, 126, 127, 200, 1000, 65535, 65536, 70000, 1 << 20];
  for (const size of sizes) await echoes(ws, pattern(size, size), true, `binary ${size} B`);
  for (const size of [0, 1, 125, 126, 200, 65535, 65536]) {
    await echoes(ws, Buffer.from('x'.repeat(size)), false, `text ${size} B`);
  }
  await echoes(ws, Buffer.from('héllo wörld ✓ 𝄞 中文'.repeat(20)), false, 'text, multi-byte UTF-8');

  // A burst: many messages written at once, read by the relay in few chunks, must come back in order.
  const burst = [];
  for (let i = 0; i < 200; i++) burst.push(Buffer.from(`m${i}:${'y'.repeat(i % 150)}`));
  const received = [];
  const done = new Promise((resolve) => {
    const onMessage = (data) => {
      received.push(data.toString());
      if (received.length === burst.length) {
        ws.removeListener('message', onMessage);
        resolve();
      }
    };
    ws.on('message', onMessage);
  });
  for (const message of burst) ws.send(message, { binary: false });
  await done;
  report('burst of 200 messages in order', received.every((m, i) => m === burst[i].toString()));

  // Mixed binary and text burst with a size crossing 125/126.
  const mixed = [pattern(10, 1), Buffer.from('t'.repeat(130)), pattern(126, 2), Buffer.from('u')];
  const kinds = [true, false, true, false];
  const got = [];
  const mixedDone = new Promise((resolve) => {
    const onMessage = (data, isBinary) => {
      got.push([data, isBinary]);
      if (got.length === mixed.length) {
        ws.removeListener('message', onMessage);
        resolve();
      }
    };
    ws.on('message', onMessage);
  });
  mixed.forEach((m, i) => ws.send(m, { binary: kinds[i] }));
  await mixedDone;
  report('mixed burst keeps types and order',
    got.every(([d, b], i) => b === kinds[i] && Buffer.compare(d, mixed[i]) === 0));

  // Fragmented message: three fragments, one message back.
  const fragReply = next(ws, 'message');
  ws.send(Buffer.from('frag-one-'), { binary: false, fin: false });
  ws.send(Buffer.from('frag-two-'), { binary: false, fin: false });
  ws.send(Buffer.from('frag-end'), { binary: false, fin: true });
  const [fragData, fragBinary] = await fragReply;
  report('fragmented text message', !fragBinary && fragData.toString() === 'frag-one-frag-two-frag-end');

  // Ping passes through; the echo's pong comes back with the same payload.
  const pong = next(ws, 'pong');
  ws.ping(Buffer.from('are-you-there'));
  const [pongData] = await pong;
  report('ping passes through, pong comes back', pongData.toString() === 'are-you-there');

  // Close code and reason reach the upstream (the echo echoes them back).
  const closed = next(ws, 'close');
  ws.close(4321, 'bye now');
  const [code, reason] = await closed;
  report('close code and reason round trip', code === 4321 && reason.toString() === 'bye now', `${code} ${reason}`);

  // Invalid UTF-8 in a text frame: the relay fails the browser leg with 1007.
  const bad = await open();
  const badClosed = next(bad, 'close');
  // FIN+text, masked with 01 02 03 04, payload 68 c3 28 ("h" and a broken two-byte sequence).
  bad._socket.write(Buffer.from([0x81, 0x83, 1, 2, 3, 4, 0x68 ^ 1, 0xc3 ^ 2, 0x28 ^ 3]));
  const [badCode] = await badClosed.catch(() => [null]);
  report('invalid UTF-8 text closes with 1007', badCode === 1007, `close ${badCode}`);

  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  process.exit(failed ? 1 : 0);
})().catch((error) => {
  process.stdout.write(`FAIL ${error.stack}\n${passed} passed, ${failed + 1} failed\n`);
  process.exit(1);
});
