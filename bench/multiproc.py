"""Run N relay processes on one host, sharing one listening port, with no change to the relay.

    python bench/multiproc.py --processes 2 --listen 127.0.0.1:8080 [--shared-socket] -- \\
        twistd -n --pidfile= --reactor=chatrelay --logger=chatrelay.logs.observer chatrelay --listen systemd:domain=INET:index=0 [options]

Each child gets a listening socket as file descriptor 3 with LISTEN_FDS=1, LISTEN_FDNAMES and
LISTEN_PID set as systemd's socket activation does, so Twisted's `systemd:domain=INET:index=0`
endpoint adopts it. By default each child gets its own socket bound with SO_REUSEPORT, and the
kernel spreads new connections over the processes; with --shared-socket all children adopt one
socket (one accept queue, taken from by whichever process wakes first).

SIGTERM or SIGINT is passed on to every child; the launcher exits when all have exited, with the
first non-zero status among them.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys

LISTEN_FD = 3  # SD_LISTEN_FDS_START

# Run in the child, between fork and the relay's exec: put the socket at fd 3, name this pid.
_EXEC_WITH_FD = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.set_inheritable(3, True)\n"
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='relay')\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def listening_sockets(host, port, processes, shared=False, backlog=1024):
    """`processes` listening sockets on (host, port): one per process with SO_REUSEPORT, or one
    socket repeated when `shared`. Port 0 picks a free port (the same for all)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    for _ in range(1 if shared else processes):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if not shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        sock.listen(backlog)
        sockets.append(sock)
    if shared:
        sockets *= processes
    return sockets, port


def spawn(command, sock, preexec_fn=None, **popen_kwargs):
    """Start `command` with `sock` as its systemd-style listening descriptor (fd 3)."""
    fd = sock.fileno()
    wrapper = [sys.executable, "-c", _EXEC_WITH_FD, str(fd), *command]
    return subprocess.Popen(wrapper, pass_fds=(fd,), preexec_fn=preexec_fn, **popen_kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", "-n", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT")
    parser.add_argument("--shared-socket", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the relay command after --")
    host, _, port = args.listen.rpartition(":")
    sockets, port = listening_sockets(host.strip("[]"), int(port), args.processes, args.shared_socket)
    children = [spawn(command, sock) for sock in sockets]
    for sock in set(sockets):
        sock.close()
    print(f"multiproc: {len(children)} processes on {host}:{port}: "
          + " ".join(str(child.pid) for child in children), flush=True)

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        code = child.wait()
        if code and not status:
            status = code
    return status


if __name__ == "__main__":
    sys.exit(main())
