#!/usr/bin/env bash
# Runs the Autobahn|Testsuite through the relay, in both directions (see docs/conformance.md):
#   server: the suite plays the browser, the relay's upstream is chatrelay.echo;
#   client: the suite plays Binance (a fuzzing server), an echo client plays the browser.
# Usage: conformance/run.sh [server|client|both] [extra autobahn-suite options, e.g. --cases '1.*']
# Exit status: 0 when every case passed in every direction run, 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=${AUTOBAHN_SUITE:-$here/../../shared/conformance/autobahn-suite}
mode=${1:-both}; shift || true
out=${CONFORMANCE_OUT:-$(mktemp -d /tmp/chatrelay-conformance.XXXXXX)}
mkdir -p "$out"
key=conformance-key
relay_flags=(--compression both --max-message-size 67108864 --allow-target 'ws://127.0.0.1:*'
             --max-connections-per-ip 1000 --ping-interval 0)

if [[ ! -x $suite && ! -f $suite ]]; then
  echo "conformance: the suite runner is missing ($suite)"; exit 1
fi
py2=$( { ls "$(pyenv root 2>/dev/null)"/versions/2.7*/bin/python 2>/dev/null; command -v python2.7; } | head -1)
if [[ -z $py2 ]]; then
  echo "conformance: no Python 2.7 on this machine (the suite needs it: pyenv install 2.7.18)"; exit 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

relay_port= relay_pid=
start_relay() {  # start_relay LOGFILE: starts twistd chatrelay on a free port, sets relay_port
  relay_port=$(free_port)
  BINANCE_PROXY_TOKEN=$key twistd -n --pidfile= chatrelay --listen "tcp:$relay_port:interface=127.0.0.1" \
    "${relay_flags[@]}" > "$1" 2>&1 &
  relay_pid=$!
  pids+=($relay_pid)
  for _ in $(seq 100); do grep -q "starting on $relay_port" "$1" && break; sleep 0.1; done
  grep -q "starting on $relay_port" "$1" || { echo "conformance: the relay did not start:"; cat "$1"; exit 1; }
}

relay_memory() {  # the relay's memory, from /proc: at the start, now, and its peak
  awk -v label="$1" '/^VmRSS/ {rss=$2} /^VmHWM/ {hwm=$2} END {printf "conformance: %s relay RSS %d KiB, peak %d KiB\n", label, rss, hwm}' "/proc/$relay_pid/status"
}

status=0
run_server() {
  local echo_port target
  echo_port=$(free_port)
  python3 -m chatrelay.echo --listen "tcp:$echo_port:interface=127.0.0.1" > "$out/echo.log" 2>&1 &
  pids+=($!)
  start_relay "$out/relay-server.log"
  target=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "ws://127.0.0.1:$echo_port/")
  echo "conformance: suite as the browser, relay on $relay_port, echo upstream on $echo_port"
  relay_memory "before (server)"
  bash "$suite" server "ws://127.0.0.1:$relay_port/chat-relay/?key=$key&target=$target" --out "$out/server" "$@" || status=1
  relay_memory "after (server)"
}

run_client() {
  start_relay "$out/relay-client.log"
  echo "conformance: suite as Binance, relay on $relay_port"
  relay_memory "before (client)"
  bash "$suite" client "ws://127.0.0.1:$relay_port/chat-relay/?key=$key&target={target}" --out "$out/client" "$@" || status=1
  relay_memory "after (client)"
}

case $mode in
  server) run_server "$@";;
  client) run_client "$@";;
  both) run_server "$@"; run_client "$@";;
  *) echo "usage: $0 [server|client|both] [autobahn-suite options]"; exit 2;;
esac
echo "conformance: reports and logs in $out"
exit $status
