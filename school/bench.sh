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
# Two more modes, below: cpu (CPU per request beside a bare loop, k6 and
# Locust)
# and soak (a long busy run with the real keeper, sampled to CSV and SVG).
#
# Usage: school/bench.sh [schoolbench run flags]
#   e.g. school/bench.sh --phases busy,bare --rate 3000
#   N=5000 BIG=15000 SOURCES=8 RATE=2000 school/bench.sh
#
# school/bench.sh cpu [schoolbench run flags]
#   CPU per request: KOI koi (default 2000) each holding a websocket and
#   calling conversations.history (42 messages, ~6.6 KB, no post_actions)
#   every EVERY (default 6s) on average; school CPU-s per 10,000 calls,
#   then the bare Go loop, k6 and Locust making the same calls at the same
#   rate against the same pond (phases history,history-bare,k6,locust).
#   Each peer row is skipped, saying so, without its tool; neither is a
#   dependency of the project:
#   - k6 (K6=PATH or k6 on PATH): the project does not build k6 (AGPL);
#     build it outside the repository from a checkout of its v1.8.1 tag
#     (`go build -o ~/bin/k6 .` there);
#   - Locust (LOCUST=PATH or locust on PATH), with websocket-client: on
#     Debian `apt-get install python3-locust python3-websocket`.
#   e.g. KOI=2000 school/bench.sh cpu --measure 60s ; K6=~/bin/k6 school/bench.sh cpu
#
# school/bench.sh soak [schoolbench soak flags]
#   A long busy run: pond, the real keeper (koipond keeper) and SCHOOLS
#   school processes; KOI koi (default 5000) of an always-on run of the
#   demo's Slack behaviors at TIME_SCALE (default 1) for DURATION (default
#   5m). Every SAMPLE (default 10s) it writes each process's RSS and CPU
#   to OUT/soak.csv (time,process,rss_bytes,cpu_seconds,koi,requests),
#   then draws OUT/soak.svg and prints a summary line per process (RSS per
#   koi at each sample after the first minute, the last 2 minutes' slope
#   in % per minute, growth per 10 minutes over the last 20, CPU) and the
#   keeper's RSS growth for the run. OUT defaults to /tmp/koipond-soak-<time> (kept).
#   The keeper runs as deployed, without --pprof; --keeper-pprof serves
#   its profiles (and so samples its heap) and saves its heap profile.
#   e.g. school/bench.sh soak                                  # 5,000 koi, 5 min
#        TIME_SCALE=10 DURATION=2m school/bench.sh soak
#        DURATION=30m school/bench.sh soak                     # the 30-min soak
#   A samples file is judged again, and its chart redrawn, without a run:
#        go run ./school/bench/schoolbench soak-summary --csv OUT/soak.csv --koi 5000
set -euo pipefail

mode=run
case "${1:-}" in
cpu | soak)
	mode=$1
	shift
	;;
esac

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

case $mode in
run)
	"$tmp/schoolbench" run --koipond "$tmp/koipond" --tmp "$tmp" \
		--n "${N:-5000}" --big "${BIG:-15000}" --sources "${SOURCES:-8}" --rate "${RATE:-2000}" "$@" &
	;;
cpu)
	"$tmp/schoolbench" run --koipond "$tmp/koipond" --tmp "$tmp" --phases history,history-bare,k6,locust \
		--history-koi "${KOI:-2000}" --history-every "${EVERY:-6s}" "$@" &
	;;
soak)
	out=${OUT:-${TMPDIR:-/tmp}/koipond-soak-$(date -u +%Y%m%dT%H%M%SZ)}
	echo "== soak output in $out"
	"$tmp/schoolbench" soak --koipond "$tmp/koipond" --out "$out" --koi "${KOI:-5000}" --schools "${SCHOOLS:-1}" \
		--time-scale "${TIME_SCALE:-1}" --duration "${DURATION:-5m}" --sample "${SAMPLE:-10s}" "$@" &
	;;
esac
bench_pid=$!
rc=0
wait "$bench_pid" || rc=$?
bench_pid=""
exit $rc
