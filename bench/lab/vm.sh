#!/usr/bin/env bash
# Live migration of a QEMU guest under traffic in the lab: RUNS times
# `ilalab demo --workload vm` (3 NVEs, a ping every 10 ms and a TCP echo
# stream towards the VM, which QEMU migrates from nve3 to nve2), then the
# distribution of lost pings, gaps, QEMU's figures and the commit delay.
# Needs root, qemu-system-x86, busybox-static and apt access to
# linux-image-amd64 (the guest kernel, cached in ILAMESH_VM_CACHE).
# RUNS (default 10), OUT_DIR (default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/lab/vm: needs root"; exit 1; }
RUNS=${RUNS:-10}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/ilalab-vm.XXXX)}
export ILAMESH_VM_CACHE=${ILAMESH_VM_CACHE:-$HOME/.cache/ilamesh/vm}
mkdir -p "$OUT_DIR/bin"
go build -o "$OUT_DIR/bin/" ./cmd/mapsrv ./cmd/ilad ./cmd/dnsbridge ./cmd/ilactl ./cmd/ilalab
for i in $(seq "$RUNS"); do
	# demo exits 1 when the migration lost packets: that is a result here;
	# its logs are kept beside the report.
	"$OUT_DIR/bin/ilalab" demo -q --keep --workload vm --host-link=false --name ilavmbench --state-dir "$OUT_DIR/state" --out "$OUT_DIR/run$i" >"$OUT_DIR/run$i.txt" 2>&1 || true
	cp -r "$OUT_DIR/state/logs" "$OUT_DIR/run$i/" 2>/dev/null || true
	"$OUT_DIR/bin/ilalab" down -q --name ilavmbench --state-dir "$OUT_DIR/state"
	[ -f "$OUT_DIR/run$i/report.json" ] || { echo "run $i: no report"; cat "$OUT_DIR/run$i.txt"; exit 1; }
done
echo "VM live migration under traffic, $RUNS runs (ilalab demo --workload vm; reports in $OUT_DIR/run*/report.json)"
jq -s -r '
  def pct(p): sort | .[((length - 1) * p | floor)];
  def dur: if test("ms$") then sub("ms$"; "") | tonumber elif test("µs$") then (sub("µs$"; "") | tonumber) / 1000 elif test("ns$") then 0 elif test("s$") then (sub("s$"; "") | tonumber) * 1000 else 0 end;
  def dist: if length == 0 then "n/a" else "p50 \(pct(0.5) | .*100|round/100)  max \(max | .*100|round/100)" end;
  . as $r |
  ["verdict PASS", ([$r[] | select(.verdict | startswith("PASS"))] | length | "\(.) of \($r | length)")],
  ["ping lost (of ~300 at 10 ms)", ([$r[].flows[0].lost] | "p50 \(pct(0.5))  max \(max)  total \(add)")],
  ["ping lost, by send time: before the stop / in the pause / resume to the old NVE redirect / after / flow tail", ([$r[].vm.loss[0]] | "\(map(.before_stop) | add) / \(map(.in_pause) | add) / \(map(.resume_to_redirect) | add) / \(map(.after_redirect) | add) / \(map(.at_end // 0) | add)")],
  ["guest resume to the old NVE redirect ms", ([$r[].vm.resume_to_old_nve_redirect | select(. != null) | dur] | dist)],
  ["ping longest gap ms", ([$r[].flows[0].longest_gap | dur] | dist)],
  ["tcp echo chunks lost / broken", ([$r[].flows[1].lost] | "\(add)") + " / " + ([$r[].flows[1].error | select(. != null and . != "")] | length | tostring)],
  ["tcp echo longest gap ms", ([$r[].flows[1].longest_gap | dur] | dist)],
  ["QEMU total time ms", ([$r[].vm.qemu_total_time | dur] | dist)],
  ["QEMU downtime ms", ([$r[].vm.qemu_downtime | dur] | dist)],
  ["guest paused (STOP to RESUME) ms", ([$r[].vm.guest_paused | dur] | dist)],
  ["first guest frame after RESUME ms", ([$r[].vm.first_frame_after_resume | dur] | dist)],
  ["ilad commit after the first frame ms", ([$r[].vm.commit_after_first_frame | dur] | dist)],
  ["prepare (libvirt hook) ms", ([$r[].vm.prepare | dur] | dist)],
  ["committed by the frame", ([$r[].vm.committed_by] | map(select(. == "frame")) | length | "\(.) of \($r | length)")],
  ["DNS followed", ([$r[].dns_changed] | map(select(.)) | length | "\(.) of \($r | length)")]
  | "  \(.[0]): \(.[1])"
' "$OUT_DIR"/run*/report.json
