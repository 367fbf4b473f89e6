#!/usr/bin/env bash
# Host failure with a hot standby in the lab (docs/FAILOVER.md).
#   RUNS times `ilalab demo --scenario failover` (t3's NVE dies under a
#   10 ms ping and a reconnecting TCP echo flow from t1; its standby on
#   nve2 takes over; the NVE recovers), then the distribution of the
#   outages and of the timeline; and, with CYCLES > 0, one run of
#   `ilalab demo --scenario failover --cycles CYCLES` (the "no split
#   brain" target: fail/recover cycles sampled for a split brain and a
#   steal-back).
# Needs root. RUNS (default 10; 0 skips), CYCLES (default 0), OUT_DIR
# (default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/lab/failover: needs root"; exit 1; }
RUNS=${RUNS:-10}
CYCLES=${CYCLES:-0}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/ilalab-failover.XXXX)}
mkdir -p "$OUT_DIR/bin"
go build -o "$OUT_DIR/bin/" ./cmd/mapsrv ./cmd/ilad ./cmd/dnsbridge ./cmd/ilactl ./cmd/ilalab
for i in $(seq "$RUNS"); do
	# demo exits 1 when a target was missed: that is a result here.
	"$OUT_DIR/bin/ilalab" demo -q --scenario failover --host-link=false --name ilafobench --state-dir "$OUT_DIR/state" --out "$OUT_DIR/run$i" >"$OUT_DIR/run$i.txt" 2>&1 || true
	[ -f "$OUT_DIR/run$i/failover-report.json" ] || { echo "run $i: no report"; cat "$OUT_DIR/run$i.txt"; exit 1; }
done
if [ "$RUNS" -gt 0 ]; then
	echo "failover under traffic, $RUNS runs (ilalab demo --scenario failover; reports in $OUT_DIR/run*/failover-report.json)"
	jq -s -r '
	  def pct(p): sort | .[((length - 1) * p | floor)];
	  def dur: if test("ms$") then sub("ms$"; "") | tonumber elif test("µs$") then (sub("µs$"; "") | tonumber) / 1000 elif test("ns$") then 0 elif test("s$") then (sub("s$"; "") | tonumber) * 1000 else 0 end;
	  def dist: if length == 0 then "n/a" else "min \(min | .*10|round/10)  p50 \(pct(0.5) | .*10|round/10)  max \(max | .*10|round/10)" end;
	  . as $r |
	  ["verdict PASS", ([$r[] | select(.verdict | startswith("PASS"))] | length | "\(.) of \($r | length)")],
	  ["ping outage ms", ([$r[].flows[0].longest_gap | dur] | dist)],
	  ["pings lost", ([$r[].flows[0].lost] | dist)],
	  ["tcp outage ms (break, reconnect, first echo)", ([$r[].flows[1].longest_gap | dur] | dist)],
	  ["tcp chunks lost with the old connection", ([$r[].flows[1].lost] | dist)],
	  ["tcp connections", ([$r[].tcp.connections] | dist)],
	  (($r[0].timeline | map(.what | sub("nve[0-9]+"; "NVE"; "g") | sub(" \\(.*\\)$"; ""))) [] as $w | ["\($w) ms after the failure", ([$r[].timeline[] | select((.what | sub("nve[0-9]+"; "NVE"; "g") | sub(" \\(.*\\)$"; "")) == $w and .seen) | .after_failure | dur] | if length > 0 then "\(dist)  (n=\(length))" else "not seen" end)]),
	  ["task kept by the standby after the recovery", ([$r[] | select(.after_recover.nve == .failover.to)] | length | "\(.) of \($r | length)")]
	  | "  \(.[0]): \(.[1])"
	' "$OUT_DIR"/run*/failover-report.json
fi
if [ "$CYCLES" -gt 0 ]; then
	start=$(date +%s)
	"$OUT_DIR/bin/ilalab" demo -q --scenario failover --cycles "$CYCLES" --host-link=false --name ilafocyc --state-dir "$OUT_DIR/state-cycles" --out "$OUT_DIR/cycles" >"$OUT_DIR/cycles.txt" 2>&1 || true
	echo "fail/recover cycles ($(($(date +%s) - start)) s with up and down; $OUT_DIR/cycles/failover-cycles.json):"
	cat "$OUT_DIR/cycles.txt"
fi
