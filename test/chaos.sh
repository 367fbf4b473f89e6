#!/usr/bin/env bash
# The chaos suite's long form (docs/RELIABILITY.md): every scenario of
# `ilalab chaos`, each on a fresh lab (a failed move can leave a lab that
# no longer starts as the next scenario expects), RUNS times, with and
# without a move during the fault; 1000 random moves last. Prints one line
# per run and keeps the JSON reports in OUT. Needs root.
#
#   sudo test/chaos.sh [RUNS [OUT]]        # default 3 runs, /tmp/ilalab-chaos
#   MOVES=100 SCENARIOS="link-flap-1s reg-loss" sudo test/chaos.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
out=${2:-/tmp/ilalab-chaos}
moves=${MOVES:-1000}
# kill-etcd@3 is kill-etcd against a 3-member etcd cluster
# (--etcd-members 3; etcd-leader always runs on one); kill-mapsrv-replica
# and cut-mapsrv-replica run on two mapsrv replicas (--mapsrv-replicas 2,
# which takes 3 members).
scenarios=${SCENARIOS:-"kill-ilad kill-mapsrv kill-etcd kill-etcd@3 etcd-leader kill-router link-flap-1s link-flap-5s reg-loss kill-mapsrv-replica cut-mapsrv-replica moves"}
mkdir -p "$out/bin"
go build -o "$out/bin/" ./cmd/mapsrv ./cmd/ilad ./cmd/dnsbridge ./cmd/ilactl ./cmd/ilalab ./cmd/ila-cni
ilalab="$out/bin/ilalab"
name=chaos$$
state="$out/lab"
trap '"$ilalab" down -q --name "$name" --state-dir "$state" >/dev/null 2>&1 || true' EXIT
echo "# $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for s in $scenarios; do
	variants="--move=false --move=true"
	[ "$s" = moves ] && variants="--move=false"
	for v in $variants; do
		for i in $(seq "$runs"); do
			members=1 replicas=1
			case $s in *@3 | etcd-leader) members=3 ;; kill-mapsrv-replica | cut-mapsrv-replica) members=3 replicas=2 ;; esac
			"$ilalab" up -q --name "$name" --state-dir "$state" --host-link=false --flap-moves $((moves + 10)) --etcd-members $members --mapsrv-replicas $replicas --bin-dir "$out/bin" >/dev/null
			tag="$s"
			[ "$v" = --move=true ] && tag="$s+move"
			rc=0
			"$ilalab" chaos "${s%@3}" "$v" --moves "$moves" -o json --state-dir "$state" -q >"$out/$tag-$i.json" 2>"$out/$tag-$i.err" || rc=$?
			if [ -s "$out/$tag-$i.json" ]; then
				python3 - "$out/$tag-$i.json" "$tag" "$i" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))[0]
c = r["consistency"]
print(f'{sys.argv[2]:22} run {sys.argv[3]}: ping lost {r["ping_lost"]:4}/{r["ping_sent"]:<5} gap {r["longest_gap"]:>10} '
      f'tcp {"ok" if r["tcp_survived"] else "BROKE"}  mover lost {r.get("mover_ping_lost", 0):4}  moves {len(r.get("moves") or [])} '
      f'failed {r["moves_failed"]} failed-but-happened {r["failed_but_happened"]}  consistent {c["ok"]} ({c["settled"]})  {r["verdict"][:4]}')
PY
			else
				echo "$tag run $i: no report (rc $rc): $(tail -1 "$out/$tag-$i.err")"
			fi
			"$ilalab" down -q --name "$name" --state-dir "$state" >/dev/null
		done
	done
done
