#!/usr/bin/env bash
# warehouse/bench.sh: the warehouse's speed and memory targets.
#
#   1. BenchmarkGenerate in-process: rows/s for a CSV, a JSON-lines and a
#      Parquet export of $ROWS rows (10 parts each, generated into a temp
#      folder: 50,000 users over a week, rows in random order).
#   2. The koipond binary on those exports, timed by /usr/bin/time: wall
#      time and peak RSS of the whole process. The target: the 10-million-row
#      CSV export → frequencies in ≤ 30 s with ≤ 512 MiB RSS.
#
# Usage: warehouse/bench.sh            (ROWS=10000000 by default)
#        ROWS=1000000 warehouse/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/koipond" ./cmd/koipond
echo "== in-process benchmark, $ROWS rows per format"
WAREHOUSE_BENCH_ROWS=$ROWS WAREHOUSE_BENCH_KEEP="$work/export" \
	go test -run '^$' -bench 'Generate' -benchtime 1x -timeout 30m ./warehouse | grep -E 'Benchmark|ok|FAIL'
du -sh "$work"/export/* | sed 's/^/export size: /'

fail=0
for format in csv jsonl parquet; do
	echo "== koipond warehouse generate --from <$ROWS-row $format export>"
	/usr/bin/time -f '%e %M' -o "$work/time" \
		"$work/koipond" warehouse generate --from "$work/export/$format" --out "$work/freq-$format.json" --quiet
	read -r secs kib <"$work/time"
	awk -v s="$secs" -v k="$kib" -v n="$ROWS" -v f="$format" 'BEGIN {
		printf "%s: %.1f s wall, %.0f MiB peak RSS, %.0f rows/s\n", f, s, k/1024, n/s }'
	if [ "$format" = csv ] && [ "$ROWS" -ge 10000000 ]; then
		if awk -v s="$secs" -v k="$kib" 'BEGIN { exit !(s > 30 || k > 512*1024) }'; then
			echo "FAIL: the 10M-row CSV target is ≤ 30 s and ≤ 512 MiB"
			fail=1
		else
			echo "ok: within ≤ 30 s and ≤ 512 MiB"
		fi
	fi
done
echo "== the same CSV export with --memory 32: the sort spills runs to disk and merges them"
/usr/bin/time -f '%e %M' -o "$work/time" \
	"$work/koipond" warehouse generate --from "$work/export/csv" --out "$work/freq-spill.json" --quiet --memory 32 --json |
	grep -E '"sort_runs"'
read -r secs kib <"$work/time"
awk -v s="$secs" -v k="$kib" -v n="$ROWS" 'BEGIN { printf "csv, spilling: %.1f s wall, %.0f MiB peak RSS, %.0f rows/s\n", s, k/1024, n/s }'
cmp -s <(grep -v '^//' "$work/freq-csv.json") <(grep -v '^//' "$work/freq-spill.json") &&
	echo "ok: spilled and in-memory counts agree" || { echo "FAIL: spilling changed the counts"; fail=1; }
cmp -s <(grep -v '^//' "$work/freq-csv.json") <(grep -v '^//' "$work/freq-parquet.json") &&
	cmp -s <(grep -v '^//' "$work/freq-csv.json") <(grep -v '^//' "$work/freq-jsonl.json") &&
	echo "ok: the three formats give the same frequencies" || { echo "FAIL: formats disagree"; fail=1; }
exit $fail
