#!/usr/bin/env bash
# The project's one test command (README "Run the tests"; .ci/run calls it).
# Run as root on a fresh Debian/Ubuntu machine: it installs what the tests
# need, checks formatting and vet, then runs every test, privileged ones
# included (network namespaces, eBPF, netlink). Without root the privileged
# tests skip with a message and the rest still run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo /root/go)/bin"

need=()
for p in iproute2:ip iputils-ping:ping ndisc6:ndisc6 arping:arping dnsutils:dig tcpdump:tcpdump etcd-client:etcdctl etcd-server:etcd librsvg2-bin:rsvg-convert iperf3:iperf3 curl:curl containernetworking-plugins:/usr/lib/cni/host-local frr:vtysh; do
	cmd=${p#*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("${p%%:*}")
done
# QEMU guests of deploy/lab/vm: TCG QEMU and a static busybox for the
# initramfs (its kernel is fetched with apt-get download at test time).
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if ((${#need[@]})); then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "test: installing ${need[*]}"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	else
		echo "test: missing ${need[*]} (not root or no apt-get): some tests will skip"
	fi
fi
command -v go >/dev/null || { echo "test: Go 1.26 is needed (https://go.dev/dl)"; exit 1; }

# bpffs for the datapath (tests mount their own too).
if [ "$(id -u)" = 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
	mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi

echo "test: go mod download"
go mod download

echo "test: gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './vendor/*'))
if [ -n "$bad" ]; then
	echo "gofmt: these files need formatting:"; echo "$bad"; exit 1
fi

echo "test: go mod tidy (no diff)"
go mod tidy -diff || { echo "go mod tidy: go.mod/go.sum are not tidy (run go mod tidy)"; exit 1; }

echo "test: go vet"
go vet ./...
GOOS=darwin go build ./... || { echo "GOOS=darwin go build failed: ilactl and the address tools must build off Linux"; exit 1; }

echo "test: staticcheck"
go tool staticcheck ./...

echo "test: govulncheck (skipped, with a message, when its database cannot be reached)"
./test/vulncheck.sh

echo "test: fuzz smoke (every fuzz target, 3000 inputs each; longer: test/fuzz-smoke.sh 10m)"
./test/fuzz-smoke.sh 3000x

echo "test: go test"
# -p 2: two cores; privileged tests build namespaces named per run, so
# packages may run side by side.
log=/tmp/ilamesh-test.log
if go test -race -count=1 -p 2 -timeout 30m ./... 2>&1 | tee "$log"; then
	exit 0
fi
# The end-to-end tests in ./test count packets of a lab on a shared
# machine: one that fails only there, by a test's verdict (no data race,
# no panic, no other package failing), runs once more on its own, and the
# log says so. Anything else fails the run as it is.
failed_pkgs=$(grep -E '^FAIL[[:space:]]+github.com/ilamesh/ilamesh/' "$log" | awk '{print $2}' | sort -u)
tests=$(grep -E '^--- FAIL: ' "$log" | awk '{print $3}' | sort -u | paste -sd'|' -)
if [ "$failed_pkgs" != "github.com/ilamesh/ilamesh/test" ] || [ -z "$tests" ] ||
	grep -qE 'WARNING: DATA RACE|^panic:' "$log"; then
	exit 1
fi
echo "test: ./test failed in: $tests; running them once more on their own"
go test -race -count=1 -timeout 20m -run "^($tests)\$" ./test
echo "test: FLAKY under the full run, passed on their own: $tests"
