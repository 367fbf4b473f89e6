#!/usr/bin/env bash
# A 3-member etcd cluster on loopback for a rehearsal (no TLS):
#
#   deploy/etcd/local-cluster.sh [DIR]
#
# Data, logs and pid files go to DIR (created if missing; default a new
# temp dir). Prints the endpoints to give mapsrv --etcd-endpoints and
# dnsbridge --etcd-endpoints. Stop it with: kill $(cat "$DIR"/*.pid)
#
# Members listen on 127.0.0.1 ports 12379/12380, 22379/22380, 32379/32380
# (client/peer); with ETCD_PORT_BASE=P set, on P..P+5 instead (member N:
# client P+2(N-1), peer P+2(N-1)+1), so that rehearsals can run side by
# side. Needs etcd and etcdctl: on Debian/Ubuntu `apt install etcd-server
# etcd-client`.
set -euo pipefail
for b in etcd etcdctl; do
	command -v $b >/dev/null || {
		echo "needs $b: apt install etcd-server etcd-client (Debian/Ubuntu), or https://github.com/etcd-io/etcd/releases" >&2
		exit 1
	}
done
DIR=${1:-$(mktemp -d /tmp/ila-etcd.XXXX)}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
client() { if [ -n "${ETCD_PORT_BASE:-}" ]; then echo $((ETCD_PORT_BASE + 2 * ($1 - 1))); else echo "${1}2379"; fi; }
peer() { if [ -n "${ETCD_PORT_BASE:-}" ]; then echo $((ETCD_PORT_BASE + 2 * ($1 - 1) + 1)); else echo "${1}2380"; fi; }
cluster=e1=http://127.0.0.1:$(peer 1),e2=http://127.0.0.1:$(peer 2),e3=http://127.0.0.1:$(peer 3)
endpoints=http://127.0.0.1:$(client 1),http://127.0.0.1:$(client 2),http://127.0.0.1:$(client 3)
for n in 1 2 3; do
	etcd --name e$n --data-dir "$DIR/e$n" \
		--listen-peer-urls http://127.0.0.1:$(peer $n) --initial-advertise-peer-urls http://127.0.0.1:$(peer $n) \
		--listen-client-urls http://127.0.0.1:$(client $n) --advertise-client-urls http://127.0.0.1:$(client $n) \
		--initial-cluster "$cluster" --initial-cluster-token ila-local --initial-cluster-state new \
		</dev/null >"$DIR/e$n.log" 2>&1 &
	echo $! >"$DIR/e$n.pid"
done
for i in $(seq 50); do
	etcdctl --endpoints=$endpoints endpoint health >/dev/null 2>&1 && break
	sleep 0.2
done
etcdctl --endpoints=$endpoints endpoint status -w table
echo "ETCD_ENDPOINTS=$endpoints   (data and logs in $DIR)"
