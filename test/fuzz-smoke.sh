#!/usr/bin/env bash
# Runs every native fuzz target of the module for a short time each.
#   test/fuzz-smoke.sh          10 s per target (make fuzz-smoke)
#   test/fuzz-smoke.sh 3000x    the smoke test/run.sh runs (a count, not a time:
#                               a short -fuzztime can end in "context deadline
#                               exceeded" on a loaded machine)
#   test/fuzz-smoke.sh 10m      a longer campaign
# New crashers land in the package's testdata/fuzz/ (commit them with the fix).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
n=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	grep -qs '^func Fuzz' "$dir"/*_test.go || continue
	for f in $(go test "$pkg" -list '^Fuzz' | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($t)"
		go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$t" >/tmp/ilamesh-fuzz.log 2>&1 || {
			cat /tmp/ilamesh-fuzz.log; echo "fuzz: $pkg $f failed"; exit 1; }
		n=$((n + 1))
	done
done
echo "fuzz: $n targets ran for $t each"
((n > 0)) || { echo "fuzz: no fuzz target found"; exit 1; }
