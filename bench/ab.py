#!/usr/bin/env python3
"""A/B: the same load phases against two or more chatrelay source trees, interleaved.

    python bench/ab.py --src /path/to/tree-a --src /path/to/tree-b [--src node] [--rounds 5]
        [--phases msgs1,msgs100,cycles,cycles_tls,bulk,idle,keepalive] [--seconds 4] [--ping-interval 1]

All relays run at once (each with its own echo); each round runs every phase against every
relay in turn, so the machine's noise falls on all of them alike. Prints the median of each
metric per tree and its ratio to the first. `node` stands for the Node relay baseline;
`twisted-floor`, `twisted-websocket` and `autobahn-plain` for bench/twisted-floor/relay.py (a
bare Twisted byte splice after the handshake), bench/twisted-websocket/relay.py (the Node
relay's WebSocket work on plain Twisted protocols, without Autobahn) and
bench/autobahn-plain/relay.py (a plain relay on Autobahn's two protocol classes, without
chatrelay's cuts), which reach plain ws:// targets only and are not measured per keepalive ping.
`cycles_tls` is `cycles` with the upstream leg on TLS (wss://localhost, a throwaway
certificate every relay is told to trust), as every production connection to Binance is: it
adds the TLS handshake and the host name (looked up, as Binance's is) to each cycle.
`keepalive` holds 1,000 idle relayed connections (`--keepalive-conns`) and measures the relay's
CPU per keepalive ping (each leg's ping and its pong) over `--seconds`; give it a short
`--ping-interval` (which every relay gets), or many connections and a long hold.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402

PHASES = {
    "msgs1": ("cpu_us_per_msg_n1", "us"),
    "msgs100": ("cpu_us_per_msg_n100", "us"),
    "cycles": ("cpu_us_per_conn_cycle", "us"),
    "cycles_tls": ("cpu_us_per_conn_cycle_tls_upstream", "us"),
    "bulk": ("cpu_us_per_mib", "us"),
    "idle": ("rss_kib_per_idle_conn", "KiB"),
    "keepalive": ("cpu_us_per_keepalive", "us"),
}


def load(phase, url, pids, timeout, **config):
    """bench.load, refusing a result with errors: a figure from failed connections means nothing."""
    r = bench.load(phase, url, pids, timeout, **config)
    if r.get("error_total"):
        raise RuntimeError(f"loadgen {phase} (relay pid {pids['relay']}): errors {r['errors']} "
                           f"{r.get('error_samples')}")
    return r


def measure(phase, url, pids, seconds, rate100, ping_interval, keepalive_conns=1000):
    if phase == "msgs1":
        r = load("msgs", url, pids, 120, conns=1, size=200, duration=seconds)
        return 1e6 * r["cpu"]["relay"] / r["relayed_messages"]
    if phase == "msgs100":
        r = load("msgs", url, pids, 120, conns=100, size=200, duration=seconds, rate=rate100)
        return 1e6 * r["cpu"]["relay"] / r["relayed_messages"]
    if phase in ("cycles", "cycles_tls"):
        r = load("cycles", url, pids, 120, concurrency=10, duration=seconds)
        return 1e6 * r["cpu"]["relay"] / r["cycles"]
    if phase == "bulk":
        r = load("msgs", url, pids, 120, conns=1, size=1 << 20, binary=True, duration=seconds)
        return 1e6 * r["cpu"]["relay"] / (r["relayed_bytes"] / (1 << 20))
    if phase == "keepalive":
        r = load("hold", url, pids, 120 + int(seconds), conns=keepalive_conns, hold=seconds, concurrency=50)
        pings = 2 * r["opened"] * r["hold"]["wall"] / ping_interval  # one per leg per interval
        return 1e6 * r["hold"]["cpu"]["relay"] / pings
    r = load("idle", url, pids, 180, conns=2000, settle=3, idle=1)
    return (r["rss_after"]["relay"] - r["rss_before"]["relay"]) / r["opened"]


# bench/NAME/relay.py, plain ws:// only; twisted-websocket has a keepalive, so takes --ping-interval.
BASELINES = ("twisted-floor", "twisted-websocket", "autobahn-plain")


def start_baseline(name, args, workdir, port):
    """bench/NAME/relay.py, with the first chatrelay tree given on its path (for its reactor)."""
    trees = [src for src in args.src if src != "node" and src not in BASELINES]
    env = bench.chatrelay_env(argparse.Namespace(chatrelay_src=trees[0] if trees else "installed"))
    command = [sys.executable, str(bench.BENCH / name / "relay.py"), "--port", str(port)]
    if name == "twisted-websocket":
        command += ["--ping-interval", str(args.ping_interval)]
    proc = bench.Proc(name, command, workdir, env=env)
    proc.wait_for("listening")
    return [proc]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phases", default="msgs1,msgs100,cycles")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rate100", type=int, default=4000)
    parser.add_argument("--chatrelay-option", action="append", default=[])
    parser.add_argument("--ping-interval", type=float, default=30.0, help="seconds, for every relay")
    parser.add_argument("--keepalive-conns", type=int, default=1000, help="connections held by keepalive")
    args = parser.parse_args()
    phases = args.phases.split(",")
    if set(args.src) & set(BASELINES) and {"cycles_tls", "keepalive"} & set(phases):
        parser.error(f"{', '.join(BASELINES)} reach plain ws:// targets only and are not measured "
                     "per keepalive ping: not with --phases cycles_tls or keepalive")
    args.chatrelay_option.append(f"--ping-interval={args.ping_interval}")
    bench.npm_install()
    workdir = tempfile.mkdtemp(prefix="chatrelay-ab-")
    tls = bench.TLSFiles(workdir) if "cycles_tls" in phases else None
    node_options = ["--ping-interval", str(args.ping_interval)]
    node_env = {}
    if tls is not None:  # every relay also reaches a wss:// echo, by name, trusting its certificate
        args.chatrelay_option += tls.chatrelay_options()
        node_tls_options, node_env = tls.node_relay_options()
        node_options += node_tls_options
    relays = []
    try:
        for index, src in enumerate(args.src):
            echo_port, port = bench.free_port(), bench.free_port()
            echoes = {"ws": bench.start_echo(workdir, echo_port)}
            urls = {"ws": bench.relay_url(port, echo_port)}
            if tls is not None:
                tls_port = bench.free_port()
                echoes["wss"] = bench.start_echo(workdir, tls_port, tls)
                urls["wss"] = bench.relay_url(port, tls_port, upstream="wss://localhost")
            for kind, echo in echoes.items():
                echo.name = f"echo-{kind}-{index}"
            if src == "node":
                procs = bench.start_node_relay(args, workdir, port, node_options, node_env)
            elif src in BASELINES:
                procs = start_baseline(src, args, workdir, port)
            else:
                args.chatrelay_src = src
                procs = bench.start_chatrelay(args, workdir, port)
                procs[0].env_src = src
            relays.append((src, echoes, procs, urls))
        results = {src: {phase: [] for phase in phases} for src in args.src}
        for round_index in range(args.rounds):
            for phase in phases:
                if phase == "idle" and round_index:
                    continue  # a relay's memory, once grown, is reused: idle is for fresh processes
                order = relays if round_index % 2 == 0 else relays[::-1]
                for src, echoes, procs, urls in order:
                    kind = "wss" if phase == "cycles_tls" else "ws"
                    pids = {"relay": [p.pid for p in procs], "echo": [echoes[kind].pid]}
                    value = measure(phase, urls[kind], pids, args.seconds, args.rate100, args.ping_interval,
                                    args.keepalive_conns)
                    results[src][phase].append(value)
            print(f"round {round_index + 1}/{args.rounds}: " + "; ".join(
                f"{phase} " + " / ".join(f"{results[src][phase][-1]:.1f}" for src in args.src)
                for phase in phases if results[args.src[0]][phase]), flush=True)
        first = args.src[0]
        for phase in phases:
            name, unit = PHASES[phase]
            base = statistics.median(results[first][phase])
            print(f"{name:24} " + " | ".join(
                f"{src}: {statistics.median(results[src][phase]):.1f} {unit} "
                f"(x{statistics.median(results[src][phase]) / base:.2f})" for src in args.src))
    finally:
        for src, echoes, procs, urls in relays:
            for proc in procs:
                proc.stop()
            for echo in echoes.values():
                echo.stop()


if __name__ == "__main__":
    main()
