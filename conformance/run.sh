#!/usr/bin/env bash
# Runs the Autobahn|Testsuite through the relay, in both directions (see docs/conformance.md):
#   server: the suite plays the browser, the relay's upstream is chatrelay.echo;
#   client: the suite plays Binance (a fuzzing server), an echo client plays the browser.
# Usage: conformance/run.sh [server|client|both|plain] [extra autobahn-suite options, e.g. --cases '1.*']
# `both` runs the two directions at once, each with its own relay and permessage-deflate on the
# leg the suite faces. `plain` runs both directions at once with compression off on both legs,
# where the relay's fast path for whole-message frames is on (chatrelay/fastframes.py), without
# the compression cases 12.* and 13.*. Exit status: 0 when every case passed in every direction
# run, 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=${AUTOBAHN_SUITE:-$here/../../shared/conformance/autobahn-suite}
mode=${1:-both}; shift || true
out=${CONFORMANCE_OUT:-$(mktemp -d /tmp/chatrelay-conformance.XXXXXX)}
mkdir -p "$out"
key=conformance-key
# Defaults otherwise, keepalive pings included: 64 MiB messages (9.x sends 16 MiB), the loopback
# echo or fuzzing server as the allowed target, and permessage-deflate on the leg the suite faces
# (server: the browser leg; client: the upstream leg). See docs/conformance.md.
relay_flags=(--max-message-size 67108864 --allow-target 'ws://127.0.0.1:*')

if [[ ! -f $suite ]]; then
  echo "conformance: the suite runner is missing ($suite)"; exit 1
fi
py2=$( { ls "$(pyenv root 2>/dev/null)"/versions/2.7*/bin/python 2>/dev/null; command -v python2.7; } | head -1)
if [[ -z $py2 ]]; then
  echo "conformance: no Python 2.7 on this machine (the suite needs it: pyenv install 2.7.18)"; exit 1
fi
# Install the suite once, before two directions could race to install it.
bash "$suite" server ws://127.0.0.1:1/ --cases 0.0.0 --out "$out/install" > /dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
url_encode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# One direction, in a subshell of its own: its processes, their cleanup, its exit status.
pids=() relay_port= relay_pid=
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done; wait 2>/dev/null; }

start_relay() {  # start_relay NAME COMPRESSION: twistd chatrelay on a free port; sets relay_port, relay_pid
  relay_port=$(free_port)
  BINANCE_PROXY_TOKEN=$key twistd -n --pidfile= --reactor=chatrelay chatrelay --listen "tcp:$relay_port:interface=127.0.0.1" \
    "${relay_flags[@]}" --compression "$2" > "$out/relay-$1.log" 2>&1 &
  relay_pid=$!
  pids+=("$relay_pid")
  for _ in $(seq 100); do grep -q "starting on $relay_port" "$out/relay-$1.log" && return; sleep 0.1; done
  echo "conformance: the relay did not start:"; cat "$out/relay-$1.log"; exit 1
}

relay_memory() {  # the relay's memory from /proc: now, and its peak so far
  awk -v label="$1" '/^VmRSS/ {rss=$2} /^VmHWM/ {hwm=$2}
    END {printf "conformance: %s: relay RSS %d KiB, peak %d KiB\n", label, rss, hwm}' "/proc/$relay_pid/status"
}

direction() {  # direction server|client|server-plain|client-plain [suite options]
  local name=$1 echo_port compression; shift
  trap cleanup EXIT
  case $name in
    server) compression=browser;;
    client) compression=upstream;;
    *) compression=none; set -- "$@" --exclude '12.*,13.*';;
  esac
  start_relay "$name" "$compression"
  if [[ $name == server* ]]; then
    echo_port=$(free_port)
    python3 -m chatrelay.echo --listen "tcp:$echo_port:interface=127.0.0.1" > "$out/echo-$name.log" 2>&1 &
    pids+=($!)
    echo "conformance: $name: the suite plays the browser; relay on $relay_port (compression $compression), echo upstream on $echo_port"
    set -- server "ws://127.0.0.1:$relay_port/chat-relay/?key=$key&target=$(url_encode "ws://127.0.0.1:$echo_port/")" "$@"
  else
    echo "conformance: $name: the suite plays Binance; relay on $relay_port (compression $compression)"
    set -- client "ws://127.0.0.1:$relay_port/chat-relay/?key=$key&target={target}" "$@"
  fi
  relay_memory "$name, before"
  bash "$suite" "$@" --out "$out/$name"
  local status=$? missing
  # A case the suite ran but did not report is not a pass. The harness's echo client asks for the
  # report as soon as its own last connection closes, which can beat the fuzzing server's record
  # of that last case; run any such case once more, and fail if it is still missing.
  missing=$(python3 "$here/missing_cases.py" "$out/$name/wstest.log" "$out/$name/reports")
  if [[ -n $missing ]]; then
    echo "conformance: $name: not in the report: $missing; running them again"
    bash "$suite" "$1" "$2" --cases "$missing" --out "$out/$name-again" || status=1
    missing=$(python3 "$here/missing_cases.py" "$out/$name-again/wstest.log" "$out/$name-again/reports")
    [[ -z $missing ]] || { echo "conformance: $name: still not in the report: $missing"; status=1; }
  fi
  relay_memory "$name, after"
  return $status
}

case $mode in
  server|client) direction "$mode" "$@"; status=$?;;
  both|plain)
    suffix=$([[ $mode == plain ]] && echo -plain)
    ( direction "server$suffix" "$@" ) > "$out/server$suffix.out" 2>&1 & server=$!
    ( direction "client$suffix" "$@" ) > "$out/client$suffix.out" 2>&1 & client=$!
    status=0
    wait $server || status=1
    wait $client || status=1
    cat "$out/server$suffix.out" "$out/client$suffix.out";;
  *) echo "usage: $0 [server|client|both|plain] [autobahn-suite options]"; exit 2;;
esac
echo "conformance: reports and logs in $out"
exit $status
