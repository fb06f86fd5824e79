'use strict';
// Load generator for the chatrelay benchmark: runs one phase against one relay and prints
//   RESULT {json}
// on its last line. The orchestrator (bench/run.py) passes the phase as JSON in argv[2].
//
// It reads the CPU time (utime+stime, /proc/PID/stat; utime alone as the user-space part) and
// RSS (/proc/PID/status) of the processes named in `pids` (the relay, the echo) and of itself
// right at the edges of the measured window, so a phase's set-up and tear-down are not counted.

const fs = require('fs');
const { WebSocket } = require('ws');

const cfg = JSON.parse(process.argv[2]);
const CLK = cfg.clk_tck || 100;
const now = () => performance.now() / 1000;
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

// ---------------------------------------------------------------- /proc

// CPU seconds of a process: [user + kernel, user] (utime and stime, fields 14 and 15).
function cpuTimes(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const user = Number(fields[11]) / CLK;
    return [user + Number(fields[12]) / CLK, user];
  } catch (error) {
    return [NaN, NaN];
  }
}

const cpuSeconds = (pid) => cpuTimes(pid)[0];

function statusKiB(pid) {
  const out = { rss: NaN, hwm: NaN };
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)/.exec(status);
    const hwm = /VmHWM:\s+(\d+)/.exec(status);
    if (rss) out.rss = Number(rss[1]);
    if (hwm) out.hwm = Number(hwm[1]);
  } catch (error) {
    // gone
  }
  return out;
}

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch (error) {
    return NaN;
  }
}

const sum = (values) => values.reduce((a, b) => a + b, 0);

// The whole machine's busy time (all processes, all cores), from /proc/stat, in seconds.
function machineBusy() {
  try {
    const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = fields[3] + (fields[4] || 0); // idle + iowait
    return (sum(fields.slice(0, 8)) - idle) / CLK;
  } catch (error) {
    return NaN;
  }
}
const roles = Object.keys(cfg.pids || {});

function snapshot(withFds = false) {
  const snap = { t: now(), cpu: {}, user: {}, rss: {}, per_pid: {} };
  for (const role of roles) {
    const pids = cfg.pids[role];
    const times = pids.map(cpuTimes);
    const cpus = times.map((t) => t[0]);
    snap.cpu[role] = sum(cpus);
    snap.user[role] = sum(times.map((t) => t[1]));
    snap.rss[role] = sum(pids.map((pid) => statusKiB(pid).rss));
    if (role === 'relay' && pids.length > 1) snap.per_pid.cpu = cpus;
    if (withFds) snap.per_pid[`${role}_fds`] = pids.map(fdCount);
  }
  snap.cpu.loadgen = cpuSeconds(process.pid);
  snap.cpu.machine = machineBusy();
  return snap;
}

function window(a, b) {
  const out = { wall: b.t - a.t, cpu: {}, user_cpu: {}, rss_before: a.rss, rss_after: b.rss };
  for (const role of Object.keys(b.cpu)) out.cpu[role] = b.cpu[role] - a.cpu[role];
  for (const role of Object.keys(b.user)) out.user_cpu[role] = b.user[role] - a.user[role];
  if (a.per_pid.cpu) out.relay_cpu_per_pid = b.per_pid.cpu.map((c, i) => c - a.per_pid.cpu[i]);
  return out;
}

// ---------------------------------------------------------------- connections

const errors = { open: 0, error: 0, unexpected_close: 0, close_code: 0, close_timeout: 0, echo: 0 };
const errorSamples = [];
function noteError(kind, detail) {
  errors[kind] += 1;
  if (errorSamples.length < 10) errorSamples.push(`${kind}: ${detail}`);
}

const wsOptions = { perMessageDeflate: false, maxPayload: 0 };

function openOne(index) {
  const options = { ...wsOptions };
  if (cfg.local_addresses && cfg.local_addresses.length) {
    options.localAddress = cfg.local_addresses[index % cfg.local_addresses.length];
  }
  return new Promise((resolve) => {
    const ws = new WebSocket(cfg.url, options);
    ws.expectClose = false;
    const settle = (ok, detail) => {
      ws.removeAllListeners('open');
      if (!ok) {
        noteError('open', detail);
        ws.removeAllListeners('close');
        ws.removeAllListeners('error');
        ws.on('error', () => {});
        ws.terminate();
        resolve(null);
        return;
      }
      ws.removeAllListeners('close');
      ws.removeAllListeners('error');
      ws.on('error', (error) => noteError('error', error.message));
      ws.on('close', (code) => {
        if (!ws.expectClose) noteError('unexpected_close', `code ${code}`);
      });
      resolve(ws);
    };
    ws.once('open', () => settle(true));
    ws.once('error', (error) => settle(false, error.message));
    ws.once('close', (code) => settle(false, `closed before open (${code})`));
  });
}

async function openMany(count, concurrency) {
  const out = new Array(count).fill(null);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      out[i] = await openOne(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return out.filter(Boolean);
}

function closeOne(ws, timeout) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) {
      resolve();
      return;
    }
    ws.expectClose = true;
    const timer = setTimeout(() => {
      noteError('close_timeout', 'no close reply');
      ws.terminate();
      resolve();
    }, timeout * 1000);
    ws.once('close', (code) => {
      clearTimeout(timer);
      if (code !== 1000) noteError('close_code', `closed with ${code}`);
      resolve();
    });
    ws.close(1000, 'bench done');
  });
}

async function closeMany(list, concurrency = 200, timeout = 15) {
  let next = 0;
  async function worker() {
    while (next < list.length) await closeOne(list[next++], timeout);
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker));
}

// One message and its echo on every connection, `concurrency` at a time.
async function echoRound(list, payload, concurrency = 500, timeout = 30) {
  let next = 0;
  const one = (ws) =>
    new Promise((resolve) => {
      if (ws.readyState !== WebSocket.OPEN) {
        noteError('echo', 'connection not open');
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        ws.removeListener('message', onMessage);
        noteError('echo', 'no echo');
        resolve();
      }, timeout * 1000);
      const onMessage = (data) => {
        clearTimeout(timer);
        if (data.length !== payload.length) noteError('echo', 'wrong length');
        resolve();
      };
      ws.once('message', onMessage);
      ws.send(payload, { binary: false });
    });
  async function worker() {
    while (next < list.length) await one(list[next++]);
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker));
}

function textPayload(size) {
  return Buffer.alloc(size, 'chatrelay-bench ');
}

// ---------------------------------------------------------------- phases

// Closed loop: each connection sends its next message when the echo of the last one is back.
// With `rate` (round trips per second over all connections), sends are paced to that rate.
async function phaseMessages() {
  const size = cfg.size || 200;
  const binary = Boolean(cfg.binary);
  const payload = binary ? Buffer.alloc(size, 0xa5) : textPayload(size);
  const conns = await openMany(cfg.conns, 50);
  if (conns.length !== cfg.conns) throw new Error(`opened ${conns.length}/${cfg.conns}`);
  let active = true;
  let sent = 0;
  let received = 0;
  let bytes = 0;
  const idle = [];
  const rate = cfg.rate || 0;
  const send = (ws) => {
    sent += 1;
    bytes += size;
    ws.send(payload, { binary });
  };
  for (const ws of conns) {
    ws.on('message', (data) => {
      received += 1;
      bytes += data.length;
      if (!active) return;
      if (rate) idle.push(ws);
      else send(ws);
    });
  }
  let ticker = null;
  const t0 = now();
  if (rate) {
    let issued = 0;
    idle.push(...conns);
    ticker = setInterval(() => {
      const target = Math.floor((now() - t0) * rate);
      issued = Math.max(issued, target - conns.length); // no debt beyond one round
      while (issued < target && idle.length) {
        send(idle.shift());
        issued += 1;
      }
    }, 2);
  } else {
    for (const ws of conns) send(ws);
  }
  await sleep(cfg.warmup ?? 1);
  const a = snapshot();
  const [sent0, received0, bytes0] = [sent, received, bytes];
  await sleep(cfg.duration / 2);
  const mid = snapshot(true);
  await sleep(cfg.duration / 2);
  const b = snapshot();
  const counts = { sent: sent - sent0, received: received - received0, bytes: bytes - bytes0 };
  active = false;
  if (ticker) clearInterval(ticker);
  const drainUntil = now() + 5;
  while (received < sent && now() < drainUntil) await sleep(0.05);
  await closeMany(conns);
  return {
    ...window(a, b),
    fds_mid: mid.per_pid,
    // Each message sent passes the relay once (browser -> upstream), each echo once more.
    relayed_messages: counts.sent + counts.received,
    relayed_bytes: counts.bytes,
    round_trips: counts.received,
  };
}

// Connection cycles: open (both handshakes), one message and its echo, close (both closes).
async function phaseCycles() {
  const payload = textPayload(cfg.size || 200);
  let active = true;
  let cycles = 0;
  async function worker(w) {
    let i = w;
    while (active) {
      const ws = await openOne(i);
      i += cfg.concurrency;
      if (!ws) {
        await sleep(0.05);
        continue;
      }
      await new Promise((resolve) => {
        const timer = setTimeout(() => {
          noteError('echo', 'no echo');
          resolve();
        }, 10000);
        ws.once('message', () => {
          clearTimeout(timer);
          resolve();
        });
        ws.send(payload, { binary: false });
      });
      await closeOne(ws, 10);
      cycles += 1;
    }
  }
  const workers = Promise.all(Array.from({ length: cfg.concurrency }, (_, w) => worker(w)));
  await sleep(cfg.warmup ?? 1);
  const a = snapshot();
  const cycles0 = cycles;
  await sleep(cfg.duration);
  const b = snapshot();
  const done = cycles - cycles0;
  active = false;
  await workers;
  return { ...window(a, b), cycles: done };
}

// Idle connections: RSS before and after opening `conns` relayed connections (each has carried
// one message and its echo), then idle for `settle` seconds.
async function phaseIdle() {
  await sleep(0.5);
  const a = snapshot();
  const conns = await openMany(cfg.conns, 50);
  await echoRound(conns, textPayload(200));
  await sleep(cfg.settle ?? 3);
  const idleStart = snapshot();
  await sleep(cfg.idle ?? 2);
  const b = snapshot(true);
  await closeMany(conns);
  return {
    opened: conns.length,
    rss_before: a.rss,
    rss_after: b.rss,
    idle_window: window(idleStart, b),
    fds: b.per_pid,
  };
}

function clearPeak(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
    return true;
  } catch (error) {
    return false;
  }
}

// One huge binary message through the relay and back; the relay's peak RSS while relaying it.
async function phaseHuge() {
  const size = cfg.size;
  const payload = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4096) payload.writeUInt32BE((i / 4096) >>> 0, i);
  const [ws] = await openMany(1, 1);
  if (!ws) throw new Error('could not open');
  const relayPids = cfg.pids.relay;
  await sleep(0.5);
  const cleared = relayPids.map(clearPeak).every(Boolean);
  const a = snapshot();
  const before = relayPids.map((pid) => statusKiB(pid));
  let sampledPeak = sum(before.map((s) => s.rss));
  const sampler = setInterval(() => {
    sampledPeak = Math.max(sampledPeak, sum(relayPids.map((pid) => statusKiB(pid).rss)));
  }, 5);
  const echoed = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), (cfg.echo_timeout || 120) * 1000);
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      resolve({ data, isBinary });
    });
    ws.send(payload, { binary: true });
  });
  clearInterval(sampler);
  const b = snapshot();
  const after = relayPids.map((pid) => statusKiB(pid));
  let ok = false;
  if (!echoed) noteError('echo', 'no echo of the huge message');
  else if (!echoed.isBinary || echoed.data.length !== size) noteError('echo', `echo of ${echoed.data.length} B`);
  else ok = payload.equals(echoed.data);
  if (echoed && !ok && echoed.data.length === size) noteError('echo', 'echo differs');
  await closeMany([ws]);
  const rssBefore = sum(before.map((s) => s.rss));
  const hwm = cleared ? sum(after.map((s) => s.hwm)) : NaN;
  return {
    ...window(a, b),
    size,
    intact: ok,
    hwm_reset: cleared,
    relay_rss_before_kib: rssBefore,
    relay_peak_kib: Math.max(sampledPeak, Number.isNaN(hwm) ? 0 : hwm),
    relay_sampled_peak_kib: sampledPeak,
    relay_rss_growth_kib: Math.max(sampledPeak, Number.isNaN(hwm) ? 0 : hwm) - rssBefore,
  };
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

// Open loop: `rate` messages per second spread over `conns` connections, each timed to its echo.
// With `direct_url`, as many connections straight to the echo get the same schedule in the same
// window, interleaved, so that the machine's noise falls on both alike: added = relayed - direct.
async function phaseLatency() {
  const groups = [{ name: 'relayed', url: cfg.url }];
  if (cfg.direct_url) groups.push({ name: 'direct', url: cfg.direct_url });
  const template = textPayload(cfg.size || 200);
  const sentAt = new Map();
  let recording = false;
  for (const group of groups) {
    const saved = cfg.url;
    cfg.url = group.url;
    group.conns = await openMany(cfg.conns, 50);
    cfg.url = saved;
    if (group.conns.length !== cfg.conns) throw new Error(`${group.name}: opened ${group.conns.length}/${cfg.conns}`);
    group.rtts = [];
    for (const ws of group.conns) {
      ws.on('message', (data) => {
        const seq = Number(data.toString('latin1', 0, 12));
        const t = sentAt.get(seq);
        if (t === undefined) return;
        sentAt.delete(seq);
        if (t.recorded) group.rtts.push((now() - t.at) * 1000);
      });
    }
  }
  let seq = 0;
  const t0 = now();
  const ticker = setInterval(() => {
    const target = Math.floor((now() - t0) * cfg.rate);
    while (seq < target * groups.length) {
      const group = groups[seq % groups.length];
      const index = Math.floor(seq / groups.length);
      const payload = Buffer.from(template);
      payload.write(String(seq).padStart(12, '0'), 0, 'latin1');
      sentAt.set(seq, { at: now(), recorded: recording, group });
      group.conns[index % group.conns.length].send(payload, { binary: false });
      seq += 1;
    }
  }, 1);
  await sleep(cfg.warmup ?? 1);
  recording = true;
  const a = snapshot();
  await sleep(cfg.duration);
  recording = false;
  const b = snapshot();
  clearInterval(ticker);
  await sleep(1);
  const out = { ...window(a, b) };
  for (const group of groups) {
    let lost = 0;
    for (const t of sentAt.values()) if (t.recorded && t.group === group) lost += 1;
    await closeMany(group.conns);
    const rtts = group.rtts.sort((x, y) => x - y);
    const stats = {
      samples: rtts.length,
      lost,
      p50: percentile(rtts, 50),
      p90: percentile(rtts, 90),
      p99: percentile(rtts, 99),
      p999: percentile(rtts, 99.9),
      max: rtts[rtts.length - 1],
    };
    if (group.name === 'relayed') {
      out.samples = stats.samples;
      out.lost = stats.lost;
      out.rtt_ms = stats;
    } else {
      out.direct_rtt_ms = stats;
    }
  }
  return out;
}

// Many concurrent relayed connections held open: errors, RSS, CPU while idle.
async function phaseHold() {
  await sleep(0.5);
  const a = snapshot();
  const t0 = now();
  const conns = await openMany(cfg.conns, cfg.concurrency || 50);
  const openSeconds = now() - t0;
  const payload = textPayload(200);
  await echoRound(conns, payload);
  await sleep(cfg.settle ?? 2);
  const holdStart = snapshot(true);
  const errorsBefore = { ...errors };
  await sleep(cfg.hold);
  const holdEnd = snapshot(true);
  const duringHold = {};
  for (const key of Object.keys(errors)) duringHold[key] = errors[key] - errorsBefore[key];
  await echoRound(conns, payload);
  const t1 = now();
  await closeMany(conns, 200, 30);
  const closeSeconds = now() - t1;
  return {
    requested: cfg.conns,
    opened: conns.length,
    open_seconds: openSeconds,
    close_seconds: closeSeconds,
    rss_before: a.rss,
    rss_held: holdEnd.rss,
    hold: window(holdStart, holdEnd),
    fds_held: holdEnd.per_pid,
    errors_during_hold: duringHold,
  };
}

async function phaseWarmup() {
  const conns = await openMany(10, 10);
  await echoRound(conns, textPayload(200));
  for (let i = 0; i < 20; i++) await echoRound(conns, textPayload(200));
  await closeMany(conns);
  cfg.concurrency = 4;
  cfg.duration = cfg.duration || 1;
  cfg.warmup = 0.2;
  await phaseCycles();
  return {};
}

const phases = {
  msgs: phaseMessages,
  cycles: phaseCycles,
  idle: phaseIdle,
  huge: phaseHuge,
  latency: phaseLatency,
  hold: phaseHold,
  warmup: phaseWarmup,
};

(async () => {
  const deadline = setTimeout(() => {
    process.stdout.write(`RESULT ${JSON.stringify({ fatal: 'phase timed out', errors, error_samples: errorSamples })}\n`);
    process.exit(3);
  }, (cfg.deadline || 600) * 1000);
  let result;
  try {
    result = await phases[cfg.phase]();
  } catch (error) {
    result = { fatal: String(error && error.stack ? error.stack : error) };
  }
  clearTimeout(deadline);
  result.errors = errors;
  result.error_total = sum(Object.values(errors));
  result.error_samples = errorSamples;
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  process.exit(0);
})();
