#!/usr/bin/env bash
# govulncheck over the module: known vulnerabilities (Go vulnerability
# database) in the standard library and the dependencies, reported only
# where the code can reach them. govulncheck itself comes from the Go
# module proxy at a pinned version (go run ...@version; go.mod unchanged).
#   test/vulncheck.sh                             the check test/run.sh runs
#   VULNDB=file:///srv/vulndb test/vulncheck.sh   use this copy of the database
#   VULNDB_VERSION=v0.0.0-...  test/vulncheck.sh  build the local copy from that
#                                                 version of golang.org/x/vulndb
#   VULNCHECK_REQUIRED=1 test/vulncheck.sh        fail when no database can be had
#
# The database: https://vuln.go.dev when it answers; otherwise a local copy
# built from the module golang.org/x/vulndb (the repository vuln.go.dev is
# generated from; its data/osv/ holds every entry in OSV form), fetched
# through the Go module proxy and indexed by that module's own
# cmd/indexdb into the v1 layout govulncheck reads (index/db.json,
# index/modules.json, index/vulns.json, ID/<id>.json), cached under
# ${XDG_CACHE_HOME:-~/.cache}/ilamesh/vulndb/<version>. The copy is as
# recent as the module version (latest by default; the script prints it).
# Its entries have no modified/published times (vuln.go.dev sets them from
# the repository's history); govulncheck's matching does not use them.
#
# Toolchain: the standard library is checked as the toolchain that go.mod
# names (its toolchain line) builds it: govulncheck runs under that
# toolchain (GOTOOLCHAIN, fetched through the module proxy). A machine that
# builds with an older local toolchain (GOTOOLCHAIN=local) is warned.
#
# Accepted findings (no fixed version exists; docs/SECURITY.md says why
# each is acceptable) are listed in $accepted; any other finding fails.
# Without a database govulncheck cannot say anything: the script then says
# so and exits 0 (or 1 with VULNCHECK_REQUIRED=1); it never reports "clean"
# without having checked.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.10.0
# GO-2026-4736: gobgp NEXT_HOP denial of service, every gobgp version
# (docs/SECURITY.md, "Fuzzing and supply chain").
accepted=" GO-2026-4736 "
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

not_run() {
	echo "vulncheck: $1: govulncheck NOT run"
	if [ "${VULNCHECK_REQUIRED:-0}" = 1 ]; then
		exit 1
	fi
	echo "vulncheck: skipped (VULNCHECK_REQUIRED=1 makes this an error; VULNDB=file:///path uses a local copy)"
	exit 0
}

db=${VULNDB:-}
if [ -z "$db" ] && curl -fsS -m 10 -o /dev/null https://vuln.go.dev/index/db.json 2>"$tmp/curl.err"; then
	db=https://vuln.go.dev
fi
if [ -z "$db" ]; then
	echo "vulncheck: vuln.go.dev cannot be reached ($(head -c 120 "$tmp/curl.err" | tr '\n' ' ')): building a local copy from golang.org/x/vulndb"
	# Outside the module: go.mod stays as it is.
	if ! info=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@${VULNDB_VERSION:-latest}" 2>"$tmp/dl.err"); then
		not_run "golang.org/x/vulndb cannot be downloaded ($(head -c 200 "$tmp/dl.err" | tr '\n' ' '))"
	fi
	field() { printf '%s\n' "$info" | sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p"; }
	vdb=$(field Version)
	src=$(field Dir)/data/osv
	if [ -z "$vdb" ] || [ ! -d "$src" ]; then
		not_run "golang.org/x/vulndb@${VULNDB_VERSION:-latest} has no data/osv"
	fi
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/ilamesh/vulndb/$vdb
	if [ ! -s "$cache/index/modules.json" ]; then
		rm -rf "$cache.tmp"
		mkdir -p "$(dirname "$cache")"
		if ! (cd "$tmp" && go run "golang.org/x/vulndb/cmd/indexdb@$vdb" -vulns "$src" -out "$cache.tmp") >"$tmp/index.log" 2>&1; then
			tail -5 "$tmp/index.log"
			not_run "indexing golang.org/x/vulndb@$vdb failed"
		fi
		rm -rf "$cache"
		mv "$cache.tmp" "$cache"
	fi
	echo "vulncheck: database golang.org/x/vulndb@$vdb ($(find "$cache/ID" -name '*.json' | wc -l) entries) in $cache"
	db=file://$cache
fi

local_go=$(go env GOVERSION)
want_go=$(sed -n 's/^toolchain \(go[0-9.]*\)$/\1/p' go.mod)
want_go=${VULNCHECK_TOOLCHAIN:-${want_go:-$local_go}}
if [ "$want_go" != "$local_go" ]; then
	echo "vulncheck: WARNING: this machine builds with $local_go (GOTOOLCHAIN=$(go env GOTOOLCHAIN)); go.mod names $want_go, which the check below uses: binaries built here carry $local_go's standard library"
fi
echo "vulncheck: govulncheck $version ($want_go) against $db"
# Installed, not go run: go run does not pass on its exit status (3: found).
GOTOOLCHAIN=$want_go GOBIN=$tmp/bin go install "golang.org/x/vuln/cmd/govulncheck@$version"
rc=0
GOTOOLCHAIN=$want_go "$tmp/bin/govulncheck" -db "$db" ./... >"$tmp/out" 2>&1 || rc=$?
case $rc in
0)
	tail -3 "$tmp/out"
	echo "vulncheck: clean"
	exit 0
	;;
3) ;; # vulnerabilities found
*)
	tail -20 "$tmp/out"
	echo "vulncheck: govulncheck failed (exit $rc)"
	exit 1
	;;
esac
found=$(sed -n 's/^Vulnerability #[0-9]*: \(GO-[0-9]*-[0-9]*\)$/\1/p' "$tmp/out")
left=""
for id in $found; do
	case $accepted in
	*" $id "*) echo "vulncheck: $id accepted (no fixed version; docs/SECURITY.md)" ;;
	*) left="$left $id" ;;
	esac
done
if [ -n "$found" ] && [ -z "$left" ]; then
	echo "vulncheck: clean but for the accepted findings above"
	exit 0
fi
grep -E '^(Vulnerability #|    (Found|Fixed) in:|    [A-Za-z])' "$tmp/out" | grep -v 'Example traces' || tail -40 "$tmp/out"
echo "vulncheck: NOT clean:${left:- (see above)}"
exit 1
