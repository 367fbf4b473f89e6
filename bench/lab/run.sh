#!/usr/bin/env bash
# Hot moves under traffic in the lab: RUNS times `ilalab demo` (3 NVEs, a
# ping every 10 ms and a TCP stream towards the moving task), then the
# distribution of lost pings, longest gaps and convergence per node.
# Needs root. RUNS (default 5), VIA (carry or dual, default carry), OUT_DIR
# (default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/lab: needs root"; exit 1; }
RUNS=${RUNS:-5}
VIA=${VIA:-carry}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/ilalab-bench.XXXX)}
mkdir -p "$OUT_DIR/bin"
go build -o "$OUT_DIR/bin/" ./cmd/mapsrv ./cmd/ilad ./cmd/dnsbridge ./cmd/ilactl ./cmd/ilalab
for i in $(seq "$RUNS"); do
	# demo exits 1 when the move lost packets: that is a result here.
	"$OUT_DIR/bin/ilalab" demo -q --via "$VIA" --name ilabench --state-dir "$OUT_DIR/state" --out "$OUT_DIR/run$i" >"$OUT_DIR/run$i.txt" 2>&1 || true
	[ -f "$OUT_DIR/run$i/report.json" ] || { echo "run $i: no report"; cat "$OUT_DIR/run$i.txt"; exit 1; }
done
echo "hot move (link: $VIA) under traffic, $RUNS runs (ilalab demo --via $VIA; reports in $OUT_DIR/run*/report.json)"
jq -s -r '
  def pct(p): sort | .[((length - 1) * p | floor)];
  def ms: sub("ms$"; "") | tonumber? // 0;
  def dur: if test("ms$") then sub("ms$"; "") | tonumber elif test("µs$") then (sub("µs$"; "") | tonumber) / 1000 elif test("s$") then (sub("s$"; "") | tonumber) * 1000 else 0 end;
  . as $r |
  ["ping lost (of ~300 at 10 ms)", ([$r[].flows[0].lost] | "p50 \(pct(0.5))  max \(max)")],
  ["ping longest gap ms", ([$r[].flows[0].longest_gap | dur] | "p50 \(pct(0.5) | .*10|round/10)  max \(max | .*10|round/10)")],
  ["tcp chunks lost / resets", ([$r[].flows[1].lost] | "\(add)") + " / " + ([$r[].flows[1].error | select(. != null and . != "")] | length | tostring)],
  ["tcp longest gap ms", ([$r[].flows[1].longest_gap | dur] | "p50 \(pct(0.5) | .*10|round/10)  max \(max | .*10|round/10)")],
  (($r[0].convergence | map(.node)) [] as $n | ["convergence \($n) ms after commit", ([$r[].convergence[] | select(.node == $n and .seen) | .after_commit | dur] | if length > 0 then "p50 \(pct(0.5) | .*10|round/10)  max \(max | .*10|round/10)  (n=\(length))" else "not observed" end)]),
  ["DNS followed the move", ([$r[].dns_changed] | map(select(.)) | length | "\(.) of \($r | length)")]
  | "  \(.[0]): \(.[1])"
' "$OUT_DIR"/run*/report.json
