#!/usr/bin/env bash
# Queries/s of the DNS bridge with dnsperf, side by side in one run with a
# trivial miekg/dns server answering one fixed record (target: bridge >= 0.8x)
# and, with COREDNS=1, CoreDNS's etcd plugin serving the same names from the
# same etcd (target: bridge >= 5x). Not run in CI.
#
#   bench/dns/run.sh                      # bridge vs trivial, 10 s each
#   DURATION=20 TASKS=10000 bench/dns/run.sh
#   COREDNS=1 bench/dns/run.sh            # also CoreDNS v1.15.0 (go install into a temp GOBIN)
#
# Everything listens on 127.0.0.1 only and stops when the script ends.
set -euo pipefail

DURATION=${DURATION:-10}   # seconds per dnsperf run
TASKS=${TASKS:-1000}       # tasks registered (2 names each: name AAAA, id AAAA)
CLIENTS=${CLIENTS:-4}      # dnsperf -c
OUTSTANDING=${OUTSTANDING:-100} # dnsperf -q
COREDNS=${COREDNS:-0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

command -v dnsperf >/dev/null || { echo "dnsperf not installed (apt install dnsperf)" >&2; exit 1; }

waitfile() { # file timeout-seconds
	for _ in $(seq $(($2 * 10))); do [ -s "$1" ] && return 0; sleep 0.1; done
	echo "timed out waiting for $1" >&2; return 1
}

qps() { # name port -> prints qps, logs the dnsperf summary
	local out
	out=$(dnsperf -s 127.0.0.1 -p "$2" -d "$tmp/queries.txt" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" 2>&1)
	echo "$out" | sed -n '/Statistics:/,/Latency StdDev/p' | sed "s/^/[$1] /" >&2
	echo "$out" | awk '/Queries per second:/ {print $4}'
}

echo "building benchsrv" >&2
(cd "$root" && go build -o "$tmp/benchsrv" ./bench/dns/benchsrv)

echo "starting embedded etcd, registering $TASKS tasks, starting the bridge" >&2
"$tmp/benchsrv" -mode bridge -tasks "$TASKS" -etcd-dir "$tmp/etcd" -queries "$tmp/queries.txt" \
	-skydns="$([ "$COREDNS" = 1 ] && echo true || echo false)" -ready "$tmp/bridge.env" &
pids+=($!)
waitfile "$tmp/bridge.env" 300
BRIDGE_PORT=$(sed -n 's/^PORT=//p' "$tmp/bridge.env")
ETCD_URL=$(sed -n 's/^ETCD_URL=//p' "$tmp/bridge.env")

"$tmp/benchsrv" -mode trivial -ready "$tmp/trivial.env" &
pids+=($!)
waitfile "$tmp/trivial.env" 60
TRIVIAL_PORT=$(sed -n 's/^PORT=//p' "$tmp/trivial.env")

echo "dnsperf -l $DURATION -c $CLIENTS -q $OUTSTANDING, $(wc -l <"$tmp/queries.txt") distinct queries" >&2
trivial=$(qps trivial "$TRIVIAL_PORT")
bridge=$(qps bridge "$BRIDGE_PORT")
printf 'trivial miekg/dns: %10.0f q/s\n' "$trivial"
printf 'dnsbridge:         %10.0f q/s\n' "$bridge"
awk -v b="$bridge" -v t="$trivial" 'BEGIN { printf "bridge/trivial:    %10.2fx (target >= 0.8)\n", b/t }'

if [ "$COREDNS" = 1 ]; then
	echo "installing CoreDNS $COREDNS_VERSION into a temporary GOBIN" >&2
	if ! GOBIN="$tmp/gobin" GOFLAGS=-mod=mod go install "github.com/coredns/coredns@$COREDNS_VERSION" >"$tmp/coredns-install.log" 2>&1; then
		echo "CoreDNS install failed; comparison skipped:" >&2
		tail -5 "$tmp/coredns-install.log" >&2
		exit 0
	fi
	cat >"$tmp/Corefile" <<CF
ila.internal.:0 {
	etcd ila.internal. {
		path /skydns
		endpoint $ETCD_URL
	}
}
CF
	# CoreDNS needs a fixed port: take one the kernel just handed out.
	CPORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	sed -i "s/:0 {/:$CPORT {/" "$tmp/Corefile"
	"$tmp/gobin/coredns" -conf "$tmp/Corefile" -dns.port "$CPORT" >"$tmp/coredns.log" 2>&1 &
	pids+=($!)
	sleep 2
	coredns=$(qps coredns "$CPORT")
	printf 'CoreDNS etcd:      %10.0f q/s\n' "$coredns"
	awk -v b="$bridge" -v c="$coredns" 'BEGIN { if (c > 0) printf "bridge/coredns:    %10.2fx (target >= 5)\n", b/c }'
fi
