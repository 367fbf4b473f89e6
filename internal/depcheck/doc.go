// Package depcheck holds the tests that enforce the dependency direction
// of ARCHITECTURE.md: ila is stdlib-only, peers never import peers, each
// third-party library stays in the package that owns it, internal/ is the
// ground floor (no package under it depends on ila/datapath, mapsrv,
// locator, dnsbridge or l2compat, even transitively or in its tests), and
// only the orchestrators (cmd/, deploy/lab, test) import product packages
// freely and are imported by none. The tests fail when go list fails.
package depcheck
