// Package depcheck holds a test that enforces the dependency direction of
// ARCHITECTURE.md: ila is stdlib-only, peers never import peers, and each
// third-party library stays in the package that owns it.
package depcheck
