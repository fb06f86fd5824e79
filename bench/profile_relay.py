#!/usr/bin/env python3
"""Profile chatrelay under one benchmark load: per message (100 connections) or per connection.

    python bench/profile_relay.py [--load msgs|cycles|cycles_tls|idle] [--tool cprofile|py-spy]
        [--seconds 10] [--chatrelay-src DIR] [--top 40]

`cycles_tls` is `cycles` with the upstream leg on TLS, reached by name as Binance is.

cprofile runs the relay under `twistd --profiler=cprofile` and prints the functions by own time
with call counts per relayed message (or per connection cycle); py-spy (pip install py-spy)
samples the running relay and prints self and inclusive time per function (bench/collapsed.py).
"""

import argparse
import io
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402


# C functions that are (mostly) a system call: counted on their own, not with their callers.
_SYSTEM_CALLS = {
    "send", "recv", "poll", "shutdown", "connect_ex", "close", "_accept", "register", "unregister",
    "modify", "setsockopt", "getsockopt", "getsockname", "getpeername", "write", "flush",
}


def package_of(filename):
    """Who owns the code in `filename`: chatrelay, a site-packages distribution, or the stdlib."""
    if filename == "~":
        return "builtin"
    parts = Path(filename).parts
    if "chatrelay" in parts:
        return "chatrelay"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    return "stdlib"


def own_time_by_package(raw):
    """cProfile's own time per package; a C function's time goes to its Python callers in
    proportion, except system calls, which are counted as "system calls"."""
    shares = {}
    for (filename, _line, func), (_cc, _nc, tt, _ct, callers) in raw.items():
        owners = {package_of(filename): 1.0}
        if owners == {"builtin": 1.0}:
            # "<method 'send' of '_socket.socket' objects>", "<function socket.close at 0x...>"
            names = {word.strip("'<>").rsplit(".", 1)[-1] for word in func.split()}
            if names & _SYSTEM_CALLS:
                owners = {"system calls": 1.0}
            else:
                by_caller = sum(c[2] for c in callers.values()) or 1.0
                owners = {}
                for (caller_file, _l, _f), c in callers.items():
                    key = package_of(caller_file)
                    owners[key] = owners.get(key, 0.0) + c[2] / by_caller
        for key, part in owners.items():
            shares[key] = shares.get(key, 0.0) + tt * part
    return shares


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", choices=("msgs", "cycles", "cycles_tls", "idle"), default="msgs")
    parser.add_argument("--tool", choices=("cprofile", "py-spy"), default="cprofile")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=4000, help="round trips/s for --load msgs")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--chatrelay-src", default=str(bench.REPO))
    parser.add_argument("--chatrelay-option", action="append", default=[])
    parser.add_argument("--out", default=None, help="keep the raw profile here")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="chatrelay-profile-")
    out = Path(args.out or Path(workdir) / ("relay.pstats" if args.tool == "cprofile" else "relay.txt"))
    echo_port, port = bench.free_port(), bench.free_port()
    tls = bench.TLSFiles(workdir) if args.load == "cycles_tls" else None
    echo = bench.start_echo(workdir, echo_port, tls)
    if tls is not None:  # the upstream leg on TLS, by name, as to Binance
        args.chatrelay_option += tls.chatrelay_options()
    command = bench.chatrelay_command(args, f"tcp:{port}:interface=127.0.0.1", workdir)
    if args.tool == "cprofile":
        command[1:1] = [f"--profile={out}", "--profiler=cprofile", "--savestats"]
    relay = bench.Proc("chatrelay", command, workdir, env=bench.chatrelay_env(args), cwd=workdir)
    spy = None
    try:
        relay.wait_for(rf"starting on {port}\b")
        url = bench.relay_url(port, echo_port, "wss://localhost" if tls else "ws://127.0.0.1")
        pids = {"relay": [relay.pid], "echo": [echo.pid]}
        bench.load("warmup", url, pids, 60, duration=1)
        if args.tool == "py-spy":
            spy = subprocess.Popen(["py-spy", "record", "-p", str(relay.pid), "-r", "200", "-f", "raw",
                                    "-o", str(out), "-d", str(int(args.seconds + 3))],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if args.load == "msgs":
            r = bench.load("msgs", url, pids, 300, conns=100, size=200, duration=args.seconds, rate=args.rate)
            units, name = r["relayed_messages"], "relayed message"
        elif args.load in ("cycles", "cycles_tls"):
            r = bench.load("cycles", url, pids, 300, concurrency=10, duration=args.seconds)
            units, name = r["cycles"], "connection cycle"
        else:
            r = bench.load("idle", url, pids, 300, conns=2000, settle=1, idle=args.seconds)
            units, name = r["opened"], "connection"
        if "cpu" in r:
            print(f"relay CPU {r['cpu']['relay']:.2f} s for {units} {name}s: "
                  f"{1e6 * r['cpu']['relay'] / units:.1f} us per {name}")
    finally:
        if spy is not None:
            spy.wait(60)
        relay.stop(timeout=30)
        echo.stop()
    if args.tool == "cprofile":
        stream = io.StringIO()
        stats = pstats.Stats(str(out), stream=stream)
        stats.sort_stats("tottime").print_stats(args.top)
        print(stream.getvalue())
        # Calls per unit of work, for the functions called most.
        print(f"calls per {name} (functions called at least once per {name}):")
        rows = []
        for (filename, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
            if nc >= units:
                rows.append((nc / units, tt, f"{func} ({'/'.join(Path(filename).parts[-2:])}:{line})"))
        for per, tt, where in sorted(rows, reverse=True)[: args.top]:
            print(f"{per:7.2f}  {1e6 * tt / units:7.2f} us own  {where}")
        total = sum(nc for (cc, nc, tt, ct, callers) in stats.stats.values())
        print(f"all Python function calls: {total / units:.0f} per {name} "
              "(the whole run, warm-up and set-up included)")
        print(f"own time by package (C functions counted with their Python callers), per {name}:")
        shares = own_time_by_package(stats.stats)
        whole = sum(shares.values())
        for package, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"  {package:18} {100 * seconds / whole:5.1f}%  {1e6 * seconds / units:8.1f} us (profiled)")
    else:
        subprocess.run([sys.executable, str(BENCH / "collapsed.py"), str(out), "--top", str(args.top)])
    print(f"raw profile: {out}")


if __name__ == "__main__":
    main()
