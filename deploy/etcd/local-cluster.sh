#!/usr/bin/env bash
# A 3-member etcd cluster on loopback for a rehearsal (no TLS, data in a
# temp dir): prints the endpoints to give mapsrv --etcd-endpoints and
# dnsbridge --etcd-endpoints. Stop it with: kill $(cat "$DIR"/*.pid)
set -euo pipefail
command -v etcd >/dev/null || { echo "needs the etcd server binary (https://github.com/etcd-io/etcd/releases)"; exit 1; }
DIR=${1:-$(mktemp -d /tmp/ila-etcd.XXXX)}
cluster=e1=http://127.0.0.1:12380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380
for n in 1 2 3; do
	etcd --name e$n --data-dir "$DIR/e$n" \
		--listen-peer-urls http://127.0.0.1:${n}2380 --initial-advertise-peer-urls http://127.0.0.1:${n}2380 \
		--listen-client-urls http://127.0.0.1:${n}2379 --advertise-client-urls http://127.0.0.1:${n}2379 \
		--initial-cluster "$cluster" --initial-cluster-token ila-local --initial-cluster-state new \
		>"$DIR/e$n.log" 2>&1 &
	echo $! >"$DIR/e$n.pid"
done
endpoints=http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379
for i in $(seq 50); do
	etcdctl --endpoints=$endpoints endpoint health >/dev/null 2>&1 && break
	sleep 0.2
done
etcdctl --endpoints=$endpoints endpoint status -w table
echo "ETCD_ENDPOINTS=$endpoints   (data and logs in $DIR)"
