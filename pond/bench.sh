#!/usr/bin/env bash
# pond/bench.sh — pond's three benchmark figures, on loopback only:
#   1. pond RSS per websocket with N (default 15,000) clients held open from
#      a separate load process (pondload), bound to several 127.0.0.x sources;
#   2. fan-out of one chat.postMessage in #general to all N members: time
#      until the last member has the event (p100), over POSTS posts;
#   3. conversations.history throughput (wrk with pond/bench/history.lua if
#      wrk is installed, and pondload's Go loop).
# It builds both binaries, starts pond, and kills only the pond it started,
# by pid. Every load loop is bounded in count and time.
#
# Usage: pond/bench.sh            (from the repository root or anywhere)
#   N=15000 POSTS=5 PORT=19090 HISTORY_SECS=10 SOURCES=8 RTM=1 pond/bench.sh
#   (RTM=1: each client calls rtm.connect and dials its ticket url, as koi do)
set -euo pipefail

N=${N:-15000}
POSTS=${POSTS:-5}
PORT=${PORT:-19090}
HISTORY_SECS=${HISTORY_SECS:-10}
SOURCES=${SOURCES:-8}
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go

cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pond_pid=""
cleanup() {
	if [ -n "$pond_pid" ]; then
		kill "$pond_pid" 2>/dev/null || true
		wait "$pond_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building"
"$GO" build -o "$tmp/koipond" ./cmd/koipond
"$GO" build -o "$tmp/pondload" ./pond/cmd/pondload

# Both processes need N+ file descriptors: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
echo "== machine: $(nproc) cores, open-files limit $(ulimit -n), $(uname -sr)"

base="http://127.0.0.1:$PORT"
start_pond() {
	"$tmp/koipond" pond --http "127.0.0.1:$PORT" --no-rate-limits "$@" >"$tmp/pond.log" 2>&1 &
	pond_pid=$!
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pond_pid" 2>/dev/null; then
			cat "$tmp/pond.log"
			echo "pond exited" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "pond did not start listening" >&2
	exit 1
}
stop_pond() {
	kill "$pond_pid" 2>/dev/null || true
	wait "$pond_pid" 2>/dev/null || true
	pond_pid=""
}

echo "== 1+2: $N websockets from a separate process, RSS per connection, fan-out in #general"
start_pond
sleep 1 # let the workspace settle before the RSS baseline
"$tmp/pondload" ws --base "$base" --n "$N" --sources "$SOURCES" --pond-pid "$pond_pid" --posts "$POSTS" --timeout 5m ${RTM:+--rtm}
stop_pond

echo "== 3: conversations.history throughput (limit 20, #general, 1000 rotating tokens)"
start_pond
if command -v wrk >/dev/null; then
	wrk -t2 -c64 -d"${HISTORY_SECS}s" -s pond/bench/history.lua "$base/api/conversations.history" |
		grep -E 'Requests/sec|Latency|requests in|Non-2xx'
else
	echo "(wrk not installed: apt-get install -y wrk; using the Go loop only)"
fi
"$tmp/pondload" history --base "$base" --duration "${HISTORY_SECS}s" --conns 64 --limit 20
stop_pond
echo "== done"
