#!/usr/bin/env bash
# school/bench.sh — the school's benchmark figures, on loopback
# only, pond and the school each in a separate process:
#   1. density: 5,000 idle koi (RSS, CPU over 30 s) and 15,000 in one
#      school spread over several 127.0.0.x source addresses (RSS);
#   2. boot: 5,000 koi from zero to connected with the ramp unlimited;
#   3. cost per call: school CPU-s per 10,000 api steps vs a bare Go loop
#      making the same calls at the same rate and concurrency;
#   4. stop latency: global stop → last request at pond, all websockets
#      closed.
# It builds koipond and the harness (school/bench/schoolbench), which starts
# an embedded nats-server and a keeper stand-in in its own process, and
# stops only the processes it started, by pid, even on failure or Ctrl-C.
# Every loop is bounded in count and time. Takes about 4 minutes.
#
# Usage: school/bench.sh [schoolbench run flags]
#   e.g. school/bench.sh --phases busy,bare --rate 3000
#   N=5000 BIG=15000 SOURCES=8 RATE=2000 school/bench.sh
set -euo pipefail

GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go

cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
bench_pid=""
cleanup() {
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		kill "$bench_pid" 2>/dev/null || true # the harness stops its children
		wait "$bench_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building ($(date -u +%FT%TZ))"
"$GO" build -o "$tmp/koipond" ./cmd/koipond
"$GO" build -o "$tmp/schoolbench" ./school/bench/schoolbench

# Children inherit the open-files limit: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
echo "== machine: $(nproc) cores, open-files limit $(ulimit -n), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"

"$tmp/schoolbench" run --koipond "$tmp/koipond" --tmp "$tmp" \
	--n "${N:-5000}" --big "${BIG:-15000}" --sources "${SOURCES:-8}" --rate "${RATE:-2000}" "$@" &
bench_pid=$!
rc=0
wait "$bench_pid" || rc=$?
bench_pid=""
exit $rc
