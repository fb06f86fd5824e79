#!/usr/bin/env python3
"""chatrelay benchmark: chatrelay against a Node.js `ws` relay and nginx, in the same run.

    python bench/run.py [--quick] [--runs N] [--out bench/results/latest.json]

Starts a Node `ws` echo upstream and a Node `ws` load generator (bench/load), then for each relay
under test (chatrelay, the Node relay in bench/node-relay, nginx as a plain WebSocket proxy)
measures the relay process's own CPU time (utime+stime, /proc/PID/stat) and RSS
(/proc/PID/status) around each phase, and prints one line per metric with the median over the
runs and the medians of the per-run ratios chatrelay/node and chatrelay/nginx.
See docs/performance.md for the method and the latest results.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from functools import partial
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import multiproc  # noqa: E402

TOKEN = "bench-relay-token-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 65536  # wanted; capped at the hard limit where it cannot be raised (no CAP_SYS_RESOURCE)
MAX_MESSAGE = 512 << 20  # every relay allows the 256 MiB message
RELAYS = ("chatrelay", "node", "nginx")
BASELINES = ("node", "nginx")


def log(text=""):
    print(text, flush=True)


def nofile_limit():
    """The open-files limit the benchmark can give its processes: NOFILE, or the hard limit when
    that is lower and cannot be raised (raising it needs CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= NOFILE:
        return NOFILE
    try:
        pid = os.fork()
    except OSError:
        return hard
    if pid == 0:  # try in a child, so this process keeps its limits
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
            os._exit(0)
        except (ValueError, OSError):
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return NOFILE if os.WEXITSTATUS(status) == 0 else hard


FD_LIMIT = nofile_limit()


def raise_nofile():
    """preexec_fn: a higher open-files limit for the processes the benchmark starts."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, max(FD_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Proc:
    """A process the benchmark started; stopped by its own pid only."""

    def __init__(self, name, command, logdir, env=None, cwd=None, popen=None):
        self.name = name
        self.log_path = Path(logdir) / f"{name}.log"
        serial = 1
        while self.log_path.exists():  # one log per process
            serial += 1
            self.log_path = Path(logdir) / f"{name}-{serial}.log"
        self.log_file = open(self.log_path, "ab")
        if popen is not None:
            self.popen = popen(stdout=self.log_file, stderr=subprocess.STDOUT)
        else:
            self.popen = subprocess.Popen(
                command, stdout=self.log_file, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                preexec_fn=raise_nofile, stdin=subprocess.DEVNULL,
            )
        self.pid = self.popen.pid

    def text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern, deadline=30.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if re.search(pattern, self.text()):
                return True
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; its log:\n{self.text()[-3000:]}")

    def stop(self, timeout=15.0):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.log_file.close()


# ---------------------------------------------------------------------------------------- relays


def chatrelay_env(args):
    env = dict(os.environ, BINANCE_PROXY_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    if args.chatrelay_src != "installed":
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(args.chatrelay_src).resolve()), env.get("PYTHONPATH")) if p
        )
    return env


def twistd_path():
    candidate = Path(sys.executable).parent / "twistd"
    return str(candidate) if candidate.exists() else shutil.which("twistd") or "twistd"


_TWISTD_OUTPUT = {}


def twistd_output(args, workdir, *argv):
    """What `twistd ARGV` prints with the chatrelay being measured (remembered per source)."""
    key = (args.chatrelay_src, argv)
    if key not in _TWISTD_OUTPUT:
        out = subprocess.run(
            [twistd_path(), *argv], env=chatrelay_env(args), cwd=workdir,
            capture_output=True, text=True, timeout=60,
        )
        _TWISTD_OUTPUT[key] = out.stdout + out.stderr
    return _TWISTD_OUTPUT[key]


def chatrelay_extra_options(args, workdir):
    """Options the benchmark needs that this chatrelay version may or may not have."""
    help_text = twistd_output(args, workdir, "chatrelay", "--help")
    extra = ["--max-message-size", str(MAX_MESSAGE)]
    # Connection limits must not refuse the benchmark's own connections (all from 127.0.0.1).
    for option in ("--max-connections", "--max-connections-per-ip"):
        if option in help_text:
            extra += [option, "100000"]
    extra += args.chatrelay_option
    return extra


def chatrelay_reactor(args, workdir):
    """`--reactor=chatrelay`, as deployed, when the chatrelay being measured has that reactor."""
    reactors = twistd_output(args, workdir, "--help-reactors")
    return ["--reactor=chatrelay"] if re.search(r"^\s*chatrelay\s", reactors, re.MULTILINE) else []


def chatrelay_logger(args):
    """`--logger=chatrelay.logs.observer`, as deployed, when the chatrelay being measured has it."""
    if args.chatrelay_src == "installed":
        try:
            present = importlib.util.find_spec("chatrelay.logs") is not None
        except ImportError:  # no chatrelay at all
            present = False
    else:
        present = (Path(args.chatrelay_src) / "chatrelay" / "logs.py").exists()
    return ["--logger=chatrelay.logs.observer"] if present else []


def chatrelay_command(args, listen, workdir):
    return [
        twistd_path(), "-n", "--pidfile=", *chatrelay_reactor(args, workdir), *chatrelay_logger(args),
        "chatrelay", "--listen", listen,
        "--allow-target", "ws://127.0.0.1:*", *chatrelay_extra_options(args, workdir),
    ]


def start_chatrelay(args, workdir, port):
    proc = Proc(
        "chatrelay", chatrelay_command(args, f"tcp:{port}:interface=127.0.0.1", workdir), workdir,
        env=chatrelay_env(args), cwd=workdir,
    )
    proc.wait_for(rf"starting on {port}\b")
    match = re.search(r"NVX (\w+)", proc.text())
    proc.info = {"nvx": match.group(1) if match else "not logged"}
    reactor = re.search(r"reactor class: (\S+?)\.?$", proc.text(), re.MULTILINE)
    proc.info["reactor"] = reactor.group(1) if reactor else "not logged"
    proc.info["logger"] = "chatrelay.logs.observer" if chatrelay_logger(args) else "twistd's default"
    version = re.search(r"chatrelay (\S+) \(autobahn (\S+?),", proc.text())
    if version:
        proc.info.update(chatrelay=version.group(1), autobahn=version.group(2))
    return [proc]


def start_chatrelay_multi(args, workdir, port, processes, shared):
    sockets, port = multiproc.listening_sockets("127.0.0.1", port, processes, shared)
    command = chatrelay_command(args, "systemd:domain=INET:index=0", workdir)
    procs = []
    for index, sock in enumerate(sockets):
        procs.append(Proc(
            f"chatrelay-x{processes}-{index}", None, workdir,
            popen=lambda sock=sock, **kw: multiproc.spawn(
                command, sock, preexec_fn=raise_nofile, env=chatrelay_env(args), cwd=workdir,
                stdin=subprocess.DEVNULL, **kw),
        ))
    for sock in set(sockets):
        sock.close()
    for proc in procs:
        proc.wait_for(rf"starting on {port}\b")
    return procs


def start_node_relay(args, workdir, port, extra=(), env=()):
    proc = Proc(
        "node-relay",
        ["node", str(BENCH / "node-relay" / "relay.js"), "--port", str(port),
         "--allow-prefix", "ws://127.0.0.1:", "--max-message-size", str(MAX_MESSAGE), *extra],
        workdir, env=dict(os.environ, BINANCE_PROXY_TOKEN=TOKEN, **dict(env)),
    )
    proc.wait_for("listening")
    return [proc]


NGINX_CONF = """\
# nginx as a plain WebSocket proxy: the floor of a hop (written by bench/run.py).
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
worker_rlimit_nofile {nofile};
events {{
    worker_connections 40000;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=511;
        location / {{
            proxy_pass http://127.0.0.1:{echo_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


def start_nginx(args, workdir, port, echo_port):
    tmp = Path(workdir) / "nginx"
    tmp.mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, echo_port=echo_port, nofile=FD_LIMIT))
    proc = Proc("nginx", [args.nginx, "-c", str(conf), "-p", str(tmp)], workdir)
    if not wait_port(port):
        raise RuntimeError(f"nginx did not start: {proc.text()}")
    return [proc]


def start_echo(workdir, port, tls=None):
    """The echo upstream on 127.0.0.1:PORT; with `tls` (a TLSFiles), a wss:// echo on each
    address of "localhost", the name the relays are given."""
    command = ["node", str(BENCH / "load" / "echo.js"), "--port", str(port)]
    if tls is not None:
        command += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        for address in sorted({info[4][0] for info in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}):
            command += ["--host", address]
    proc = Proc("echo-tls" if tls else "echo", command, workdir)
    proc.wait_for("listening")
    return proc


class TLSFiles:
    """A throwaway self-signed certificate for "localhost", its key, made with openssl in `workdir`."""

    def __init__(self, workdir):
        self.cert = Path(workdir) / "localhost-cert.pem"
        self.key = Path(workdir) / "localhost-key.pem"
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-noenc", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
             "-keyout", str(self.key), "-out", str(self.cert)],
            capture_output=True, text=True, timeout=60,
        )
        if made.returncode:
            raise RuntimeError(f"openssl could not make a certificate: {made.stderr}")

    def chatrelay_options(self):
        """chatrelay's options to reach a wss:// echo by name, trusting this certificate."""
        return [f"--upstream-ca={self.cert}", "--allow-target=wss://localhost:*"]

    def node_relay_options(self):
        """The Node relay's options and environment to do the same."""
        return ["--allow-prefix", "wss://localhost:"], {"NODE_EXTRA_CA_CERTS": str(self.cert)}


def relay_url(port, echo_port, upstream="ws://127.0.0.1"):
    target = urllib.parse.quote(f"{upstream}:{echo_port}/chat/bench?token=t", safe="")
    return f"ws://127.0.0.1:{port}/chat-relay/?key={TOKEN}&target={target}"


# ---------------------------------------------------------------------------------------- load


def load(phase, url, pids, timeout, **config):
    """Run one load generator phase; returns its RESULT object."""
    config.update(phase=phase, url=url, pids=pids, clk_tck=CLK_TCK, deadline=timeout)
    out = subprocess.run(
        ["node", str(BENCH / "load" / "loadgen.js"), json.dumps(config)],
        capture_output=True, text=True, timeout=timeout + 30, preexec_fn=raise_nofile,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"loadgen {phase} printed no result: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    if "fatal" in result:
        raise RuntimeError(f"loadgen {phase}: {result['fatal']} {result.get('error_samples')}")
    return result


class Plan:
    """Phase sizes for a full or a quick run."""

    def __init__(self, quick):
        self.quick = quick
        self.duration = 2.0 if quick else 5.0
        self.idle_conns = 500 if quick else 2000
        self.rate100 = 4000  # round trips per second over the 100 connections
        self.huge = 256 << 20
        self.latency_duration = 3.0 if quick else 8.0
        # A relay holds two sockets per relayed connection (browser and upstream legs).
        self.hold_conns = min(2000 if quick else 10000, (FD_LIMIT - 100) // 2)
        self.hold_seconds = 10.0 if quick else 60.0
        self.scale_duration = 3.0 if quick else 6.0


def core(cpu, wall):
    return round(cpu / wall, 3) if wall else None


def user_and_kernel(result, units, name):
    """The relay's CPU per unit split into user space (the interpreter, V8, nginx's own code) and
    the kernel (system calls, the loopback network stack), from utime and stime. The kernel
    samples which of the two a process is in at each clock tick, so the split is statistical."""
    user = result["user_cpu"]["relay"]
    return {f"cpu_us_user_per_{name}": 1e6 * user / units,
            f"cpu_us_kernel_per_{name}": 1e6 * (result["cpu"]["relay"] - user) / units}


def relay_phases(plan):
    """The per-run phases, in order; each measures one relay (its Setup) and adds to that relay's
    raw results and metrics."""
    d = plan.duration

    def idle(setup, raw, metrics):
        r = raw["idle"] = load("idle", setup.url, setup.pids, 180, conns=plan.idle_conns, settle=3, idle=2)
        metrics["rss_kib_per_idle_conn"] = (r["rss_after"]["relay"] - r["rss_before"]["relay"]) / r["opened"]

    def messages(n, rate):
        def phase(setup, raw, metrics):
            r = raw[f"msgs{n}"] = load("msgs", setup.url, setup.pids, 120, conns=n, size=200, duration=d, rate=rate)
            metrics[f"cpu_us_per_msg_n{n}"] = 1e6 * r["cpu"]["relay"] / r["relayed_messages"]
            metrics[f"msgs_per_s_n{n}"] = r["relayed_messages"] / r["wall"]
            if n == 100:
                metrics.update(user_and_kernel(r, r["relayed_messages"], "msg_n100"))
        return phase

    def cycles(setup, raw, metrics):
        r = raw["cycles"] = load("cycles", setup.url, setup.pids, 120, concurrency=10, duration=d)
        metrics["cpu_us_per_conn_cycle"] = 1e6 * r["cpu"]["relay"] / r["cycles"]
        metrics.update(user_and_kernel(r, r["cycles"], "conn_cycle"))
        metrics["cycles_per_s"] = r["cycles"] / r["wall"]

    def cycles_tls(setup, raw, metrics):
        if setup.tls_url is None:  # nginx: a plain proxy, not configured for a TLS upstream
            return
        r = raw["cycles_tls"] = load("cycles", setup.tls_url, setup.tls_pids, 120, concurrency=10, duration=d)
        metrics["cpu_us_per_conn_cycle_tls"] = 1e6 * r["cpu"]["relay"] / r["cycles"]

    def bulk(setup, raw, metrics):
        r = raw["bulk"] = load("msgs", setup.url, setup.pids, 120, conns=1, size=1 << 20, binary=True, duration=d)
        metrics["cpu_us_per_mib"] = 1e6 * r["cpu"]["relay"] / (r["relayed_bytes"] / (1 << 20))
        metrics["mib_per_s"] = r["relayed_bytes"] / (1 << 20) / r["wall"]

    def latency(setup, raw, metrics):
        # The same schedule straight to the echo, interleaved in the same window: the floor.
        direct_url = f"ws://127.0.0.1:{setup.echo_port}/direct"
        r = raw["latency"] = load("latency", setup.url, setup.pids, 120, conns=100, rate=1000,
                                  duration=plan.latency_duration, direct_url=direct_url)
        metrics["rtt_ms_p50"] = r["rtt_ms"]["p50"]
        metrics["rtt_ms_p99"] = r["rtt_ms"]["p99"]
        metrics["added_rtt_ms_p50"] = r["rtt_ms"]["p50"] - r["direct_rtt_ms"]["p50"]
        metrics["added_rtt_ms_p99"] = r["rtt_ms"]["p99"] - r["direct_rtt_ms"]["p99"]

    return [idle, messages(1, 0), messages(100, plan.rate100), cycles, cycles_tls, bulk, latency]


def start_relay(kind, args, workdir, port, echo_port):
    if kind == "chatrelay":
        return start_chatrelay(args, workdir, port)
    if kind == "node":
        tls = getattr(args, "upstream_tls", None)
        if tls is None:
            return start_node_relay(args, workdir, port)
        return start_node_relay(args, workdir, port, *tls.node_relay_options())
    return start_nginx(args, workdir, port, echo_port)


def use_upstream_tls(args, workdir):
    """Give the relays a wss:// echo to reach by name ("localhost"), trusting its throwaway
    certificate: chatrelay through --upstream-ca, the Node relay through NODE_EXTRA_CA_CERTS."""
    args.upstream_tls = TLSFiles(workdir)
    args.chatrelay_option += args.upstream_tls.chatrelay_options()


class Setup:
    """One relay (one or more processes) in front of its own echo, as the load generator sees it;
    with a wss:// echo too, its URL through the relay (tls_url) and the processes to watch."""

    def __init__(self, url, procs, echo, echo_port, tls_url=None, tls_echo=None):
        self.url = url
        self.procs = procs
        self.pids = {"relay": [p.pid for p in procs], "echo": [echo.pid]}
        self.echo_port = echo_port
        self.tls_url = tls_url
        self.tls_pids = tls_echo and {"relay": self.pids["relay"], "echo": [tls_echo.pid]}


@contextlib.contextmanager
def relay_with_echo(workdir, start, tls=None):
    """A fresh echo and, in front of it, the relay processes `start(port, echo_port)` returns;
    with `tls` (TLSFiles), also a wss:// echo; all of them stopped on exit."""
    echo_port, port = free_port(), free_port()
    echo = start_echo(workdir, echo_port)
    tls_echo, tls_port = None, free_port()
    procs = []
    try:
        if tls is not None:
            tls_echo = start_echo(workdir, tls_port, tls)
        procs = start(port, echo_port)
        yield Setup(relay_url(port, echo_port), procs, echo, echo_port,
                    tls_echo and relay_url(port, tls_port, upstream="wss://localhost"), tls_echo)
    finally:
        for proc in procs:
            proc.stop()
        echo.stop()
        if tls_echo is not None:
            tls_echo.stop()


def huge_phase(kind, args, plan, workdir):
    """One 256 MiB message through a fresh relay process (no memory left over from other
    phases to reuse): the relay's RSS growth while relaying it."""
    with relay_with_echo(workdir, partial(start_relay, kind, args, workdir)) as setup:
        load("warmup", setup.url, setup.pids, 60, duration=1)
        return load("huge", setup.url, setup.pids, 300, size=plan.huge, echo_timeout=240)


def load_share(raw):
    """CPU (cores) of the relay, the echo and the load generator in the throughput windows."""
    out = {}
    for phase in ("msgs1", "msgs100", "cycles", "bulk"):
        r = raw.get(phase)
        if r:
            out[phase] = {role: core(cpu, r["wall"]) for role, cpu in r["cpu"].items()}
    return out


def one_run(relays, args, plan, workdir, run_index):
    """Every per-run phase against every relay, phase by phase. The relays run side by side,
    each in front of its own echo, and take their turns at one phase before the next phase
    starts (in an order that rotates from phase to phase and run to run): what the machine
    does meanwhile falls on all of them alike, seconds apart rather than minutes."""
    with contextlib.ExitStack() as stack:
        setups = {kind: stack.enter_context(relay_with_echo(
                      workdir, partial(start_relay, kind, args, workdir),
                      getattr(args, "upstream_tls", None) if kind != "nginx" else None))
                  for kind in relays}
        raw = {kind: {} for kind in relays}
        metrics = {kind: {} for kind in relays}
        for kind in relays:
            load("warmup", setups[kind].url, setups[kind].pids, 60, duration=1)
        for index, phase in enumerate(relay_phases(plan)):
            shift = (run_index + index) % len(relays)
            for kind in relays[shift:] + relays[:shift]:
                phase(setups[kind], raw[kind], metrics[kind])
        infos = {kind: getattr(setups[kind].procs[0], "info", {}) for kind in relays}
    results = {}
    for kind in relays:
        r = raw[kind]["huge"] = huge_phase(kind, args, plan, workdir)
        metrics[kind]["rss_growth_kib_256mib"] = r["relay_rss_growth_kib"]
        metrics[kind]["huge_intact"] = r["intact"]
        metrics[kind]["errors"] = sum(phase["error_total"] for phase in raw[kind].values())
        results[kind] = {"metrics": metrics[kind], "raw": raw[kind], "info": infos[kind],
                         "cpu_share": load_share(raw[kind])}
    return results


def hold_phase(kind, args, plan, workdir):
    """10,000 relayed connections held open: errors, RSS, CPU while idle."""
    with relay_with_echo(workdir, partial(start_relay, kind, args, workdir)) as setup:
        load("warmup", setup.url, setup.pids, 60, duration=1)
        r = load("hold", setup.url, setup.pids, int(plan.hold_seconds) + 600, conns=plan.hold_conns,
                 hold=plan.hold_seconds, concurrency=50,
                 local_addresses=[f"127.0.0.{i}" for i in range(1, 9)])
    held = r["rss_held"]["relay"]
    return {
        "raw": r,
        "metrics": {
            "hold_errors": r["error_total"] + (r["requested"] - r["opened"]),
            "hold_rss_kib": held,
            "hold_rss_kib_per_conn": (held - r["rss_before"]["relay"]) / max(1, r["opened"]),
            "hold_idle_cpu_pct": 100 * r["hold"]["cpu"]["relay"] / r["hold"]["wall"],
            "hold_open_seconds": r["open_seconds"],
        },
    }


def scale_phase(args, plan, workdir, shared=False):
    """Throughput (closed loop, 100 connections, unpaced) with 1 and with 2 chatrelay processes."""
    out = {}
    for processes in (1, 2):
        def start(port, echo_port, processes=processes):
            if processes == 1:
                return start_chatrelay(args, workdir, port)
            return start_chatrelay_multi(args, workdir, port, processes, shared)

        with relay_with_echo(workdir, start) as setup:
            load("warmup", setup.url, setup.pids, 60, duration=1)
            r = load("msgs", setup.url, setup.pids, 120, conns=100, size=200, duration=plan.scale_duration,
                     rate=0)
        out[processes] = {
            "msgs_per_s": r["relayed_messages"] / r["wall"],
            "cores": {role: core(cpu, r["wall"]) for role, cpu in r["cpu"].items()},
            "relay_cores_per_process": [core(c, r["wall"]) for c in r.get("relay_cpu_per_pid", [])],
            "relay_fds_per_process": r["fds_mid"].get("relay_fds"),
            "errors": r["error_total"],
        }
    out["ratio"] = out[2]["msgs_per_s"] / out[1]["msgs_per_s"]
    return out


# ---------------------------------------------------------------------------------------- report

METRICS = [
    # name, unit, description, target (ratio to node, or absolute)
    ("cpu_us_per_msg_n1", "us", "CPU per relayed message, 200 B text, 1 connection", None),
    ("cpu_us_per_msg_n100", "us", "CPU per relayed message, 200 B text, 100 connections", ("node", 1.0)),
    ("cpu_us_user_per_msg_n100", "us", "... of which in user space (utime)", None),
    ("cpu_us_kernel_per_msg_n100", "us", "... of which in the kernel (stime)", None),
    ("cpu_us_per_conn_cycle", "us", "CPU per connection cycle (2 handshakes, 1 msg, 2 closes)", ("node", 1.0)),
    ("cpu_us_user_per_conn_cycle", "us", "... of which in user space (utime)", None),
    ("cpu_us_kernel_per_conn_cycle", "us", "... of which in the kernel (stime)", None),
    ("cpu_us_per_conn_cycle_tls", "us", "CPU per connection cycle, upstream on TLS by name (as to Binance)", None),
    ("rss_kib_per_idle_conn", "KiB", "RSS per idle relayed connection (2,000 open)", ("node", 1.0)),
    ("cpu_us_per_mib", "us", "CPU per MiB relayed, 1 MiB binary messages", None),
    ("rss_growth_kib_256mib", "KiB", "RSS growth while relaying one 256 MiB message", ("abs", 4096)),
    ("added_rtt_ms_p50", "ms", "added round trip p50, 1,000 msg/s over 100 conns (wall clock, noisy)", None),
    ("added_rtt_ms_p99", "ms", "added round trip p99, 1,000 msg/s over 100 conns (wall clock, noisy)", None),
    ("rtt_ms_p99", "ms", "round trip p99 through the relay (the direct one is subtracted above)", None),
    ("hold_errors", "", "errors, HOLD relayed connections held 60 s", ("abs", 0)),
    ("hold_rss_kib", "KiB", "RSS with HOLD connections held", None),
    ("hold_rss_kib_per_conn", "KiB", "RSS per connection with HOLD held", None),
    ("hold_idle_cpu_pct", "%", "CPU while holding HOLD idle connections (% of a core)", None),
]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    if a is None or b is None or b <= 0 or a < 0:
        return None
    return a / b


def summarise(per_run, holds, plan):
    """Per metric: per-run values, medians, per-run ratios and their medians."""
    summary = {}
    for name, unit, description, target in METRICS:
        description = description.replace("HOLD", f"{plan.hold_conns:,}").replace(
            "60 s", f"{plan.hold_seconds:.0f} s")
        source = holds if name.startswith("hold_") else per_run
        values = {kind: [run[kind]["metrics"].get(name) for run in source if kind in run] for kind in RELAYS}
        entry = {"unit": unit, "description": description, "values": values,
                 "median": {kind: median(values[kind]) for kind in RELAYS}}
        for base in BASELINES:
            ratios = [ratio(run["chatrelay"]["metrics"].get(name), run[base]["metrics"].get(name))
                      for run in source if "chatrelay" in run and base in run]
            entry[f"ratio_{base}"] = ratios
            entry[f"ratio_{base}_median"] = median(ratios)
        if target:
            entry["target"] = target
            if target[0] == "node":
                value = entry["ratio_node_median"]
                entry["target_met"] = value is not None and value <= target[1]
            else:
                worst = max((v for v in values["chatrelay"] if v is not None), default=None)
                entry["target_met"] = worst is not None and (worst < target[1] if target[1] else worst == 0)
        summary[name] = entry
    return summary


def fmt(value, digits=1):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if abs(value) >= 10 else f"{value:.{max(digits, 2)}f}"


def print_table(summary, runs):
    log()
    log(f"Medians of {runs} run(s); ratios are medians of the per-run ratios (same run).")
    for name, entry in summary.items():
        med = entry["median"]
        if all(v is None for v in med.values()):
            continue
        target = entry.get("target")
        verdict = ""
        if target:
            want = f"chatrelay/node <= {target[1]}" if target[0] == "node" else (
                f"< {target[1]} {entry['unit']}" if target[1] else "== 0")
            verdict = f"  target {want}: {'MET' if entry.get('target_met') else 'NOT MET'}"
        unit = f" {entry['unit']}" if entry["unit"] else ""
        log(f"{name:24} chatrelay {fmt(med['chatrelay'])}{unit} | node {fmt(med['node'])} | "
            f"nginx {fmt(med['nginx'])} | x node {fmt(entry['ratio_node_median'], 2)} | "
            f"x nginx {fmt(entry['ratio_nginx_median'], 2)}{verdict}")


def markdown_table(summary, scale, runs):
    """The summary as a Markdown table (written next to the JSON)."""
    lines = [
        f"| metric (medians of {runs} runs) | chatrelay | node relay | nginx | chatrelay / node | chatrelay / nginx | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, entry in summary.items():
        med = entry["median"]
        if all(v is None for v in med.values()):
            continue
        unit = f" {entry['unit']}" if entry["unit"] else ""
        target = entry.get("target")
        verdict = ""
        if target:
            want = f"/node <= {target[1]}" if target[0] == "node" else (
                f"< {target[1]:,}{unit}" if target[1] else "0")
            verdict = f"{want}: {'**met**' if entry.get('target_met') else '**not met**'}"
        def cell(value):
            return fmt(value) if value is None else f"{fmt(value)}{unit}"

        lines.append(
            f"| {entry['description']} | {cell(med['chatrelay'])} | {cell(med['node'])} | "
            f"{cell(med['nginx'])} | {fmt(entry['ratio_node_median'], 2)} | "
            f"{fmt(entry['ratio_nginx_median'], 2)} | {verdict} |")
    if scale:
        lines.append(
            f"| chatrelay throughput, 100 connections, closed loop: 1 process / 2 processes | "
            f"{fmt(scale['msgs_per_s_1'])} / {fmt(scale['msgs_per_s_2'])} msg/s | | | "
            f"2 / 1: {fmt(scale['ratio_median'], 2)} | | |")
    return "\n".join(lines) + "\n"


def machine_info(args):
    info = {
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name")), platform.processor()),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
        "nginx": subprocess.run([args.nginx, "-v"], capture_output=True, text=True).stderr.strip(),
        "clk_tck": CLK_TCK,
        "fd_limit": FD_LIMIT,
    }
    try:
        import autobahn
        import twisted

        info["twisted"] = twisted.__version__
        info["autobahn"] = autobahn.__version__
    except ImportError:
        pass
    try:
        info["ws"] = json.loads((BENCH / "node-relay/node_modules/ws/package.json").read_text())["version"]
    except OSError:
        pass
    measured = REPO if args.chatrelay_src == "installed" else Path(args.chatrelay_src)
    git = subprocess.run(["git", "-C", str(measured), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)  # the tree measured, not this checkout
    info["chatrelay_commit"] = git.stdout.strip() or None
    info["chatrelay_src"] = args.chatrelay_src
    return info


def npm_install():
    """Install the Node packages from their lock files (a clean clone has none)."""
    for folder in (BENCH / "node-relay", BENCH / "load"):
        marker = folder / "node_modules" / ".package-lock.json"
        lock = folder / "package-lock.json"
        if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
            continue
        log(f"npm ci in {folder.relative_to(REPO)}")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder,
                       check=True, timeout=600)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases, 1 run, 10k held 10 s")
    parser.add_argument("--runs", type=int, default=None, help="runs of the per-run phases (3)")
    parser.add_argument("--hold-runs", type=int, default=1, help="runs of the 10,000-connection phase")
    parser.add_argument("--relays", default=",".join(RELAYS), help="subset, e.g. chatrelay,node")
    parser.add_argument("--skip", default="", help="comma list of: hold, scale")
    parser.add_argument("--out", default=str(BENCH / "results" / "latest.json"))
    parser.add_argument("--chatrelay-src", default=str(REPO),
                        help="source tree put first on PYTHONPATH for chatrelay, or 'installed'")
    parser.add_argument("--chatrelay-option", action="append", default=[],
                        help="extra option for twistd chatrelay (repeatable, e.g. --chatrelay-option=--ping-interval=0)")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    relays = [r for r in args.relays.split(",") if r]
    skip = set(filter(None, args.skip.split(",")))
    plan = Plan(args.quick)
    started = time.monotonic()

    npm_install()
    info = machine_info(args)
    log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    workdir = tempfile.mkdtemp(prefix="chatrelay-bench-")
    log(f"logs in {workdir}")
    use_upstream_tls(args, workdir)

    per_run, holds, scales = [], [], []
    for run in range(runs):
        t0 = time.monotonic()
        results = one_run(relays, args, plan, workdir, run)
        for kind in relays:
            m = results[kind]["metrics"]
            log(f"run {run + 1}/{runs} {kind:9} (all relays done in {time.monotonic() - t0:.0f}s): "
                f"n1 {m['cpu_us_per_msg_n1']:.1f} us/msg, n100 {m['cpu_us_per_msg_n100']:.1f} us/msg, "
                f"cycle {m['cpu_us_per_conn_cycle']:.0f} us, idle {m['rss_kib_per_idle_conn']:.1f} KiB/conn, "
                f"{m['cpu_us_per_mib']:.0f} us/MiB, 256 MiB +{m['rss_growth_kib_256mib']:,} KiB, "
                f"rtt +{m['added_rtt_ms_p50']:.2f}/+{m['added_rtt_ms_p99']:.2f} ms, errors {m['errors']}"
                + (f", NVX {results[kind]['info'].get('nvx')}, reactor {results[kind]['info'].get('reactor')}, "
                   f"logger {results[kind]['info'].get('logger')}"
                   if kind == "chatrelay" else ""))
            shares = results[kind]["cpu_share"]
            log("    cores busy (relay/echo/loadgen/whole machine): " + "; ".join(
                f"{phase} {s.get('relay', 0):.2f}/{s.get('echo', 0):.2f}/{s.get('loadgen', 0):.2f}/"
                f"{s.get('machine') or 0:.2f}" for phase, s in shares.items()))
        per_run.append(results)
        if "scale" not in skip and "chatrelay" in relays:
            t0 = time.monotonic()
            scale = scale_phase(args, plan, workdir)
            scales.append(scale)
            log(f"run {run + 1}/{runs} scale done in {time.monotonic() - t0:.0f}s: 1 process "
                f"{scale[1]['msgs_per_s']:,.0f} msg/s, 2 processes {scale[2]['msgs_per_s']:,.0f} msg/s "
                f"(x{scale['ratio']:.2f}); cores relay/echo/loadgen/whole machine 1p "
                f"{scale[1]['cores']['relay']}/{scale[1]['cores']['echo']}/{scale[1]['cores']['loadgen']}/"
                f"{scale[1]['cores'].get('machine')}, 2p "
                f"{scale[2]['cores']['relay']}/{scale[2]['cores']['echo']}/{scale[2]['cores']['loadgen']}/"
                f"{scale[2]['cores'].get('machine')}; "
                f"connections per process {scale[2]['relay_fds_per_process']} fds")

    if "hold" not in skip:
        for run in range(args.hold_runs):
            results = {}
            for kind in relays:
                t0 = time.monotonic()
                results[kind] = hold_phase(kind, args, plan, workdir)
                m = results[kind]["metrics"]
                log(f"hold {run + 1}/{args.hold_runs} {kind:9} {plan.hold_conns:,} connections for "
                    f"{plan.hold_seconds:.0f}s in {time.monotonic() - t0:.0f}s: errors {m['hold_errors']}, "
                    f"RSS {m['hold_rss_kib']:,} KiB ({m['hold_rss_kib_per_conn']:.1f} KiB/conn), "
                    f"idle CPU {m['hold_idle_cpu_pct']:.2f}% of a core, opened in {m['hold_open_seconds']:.1f}s")
                if results[kind]["raw"]["error_samples"]:
                    log(f"    error samples: {results[kind]['raw']['error_samples'][:5]}")
            holds.append(results)

    summary = summarise(per_run, holds, plan)
    print_table(summary, runs)
    scale_summary = None
    if scales:
        scale_summary = {
            "msgs_per_s_1": median([s[1]["msgs_per_s"] for s in scales]),
            "msgs_per_s_2": median([s[2]["msgs_per_s"] for s in scales]),
            "ratio_median": median([s["ratio"] for s in scales]),
            "runs": scales,
        }
        log(f"{'throughput_2_vs_1_proc':24} chatrelay 1 process {fmt(scale_summary['msgs_per_s_1'])} msg/s | "
            f"2 processes {fmt(scale_summary['msgs_per_s_2'])} msg/s | x {fmt(scale_summary['ratio_median'], 2)}")
    wall = time.monotonic() - started
    log(f"wall time {wall / 60:.1f} min")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
        "machine": info,
        "plan": vars(plan),
        "runs": runs,
        "metrics": summary,
        "scale": scale_summary,
        "per_run": per_run,
        "holds": holds,
        "wall_seconds": wall,
    }
    out.write_text(json.dumps(document, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown_table(summary, scale_summary, runs))
    log(f"wrote {out} and {out.with_suffix('.md')}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
