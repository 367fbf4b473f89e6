package mapsrv

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// MinTokenLen is the shortest management API token accepted.
const MinTokenLen = 16

// ReadTokenFile reads management API bearer tokens: one per line, blank
// lines and lines starting with # ignored. Several tokens let operators
// roll one over without a gap. Each must be at least MinTokenLen printable
// characters without spaces.
func ReadTokenFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api token file: %w", err)
	}
	return parseTokens(path, b)
}

func parseTokens(path string, b []byte) ([]string, error) {
	var toks []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < MinTokenLen {
			return nil, fmt.Errorf("api token file %s line %d: token of %d characters, want at least %d", path, n, len(line), MinTokenLen)
		}
		for _, c := range line {
			if c <= ' ' || c > '~' {
				return nil, fmt.Errorf("api token file %s line %d: want printable ASCII without spaces", path, n)
			}
		}
		toks = append(toks, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api token file %s: %w", path, err)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("api token file %s: no token", path)
	}
	return toks, nil
}

// requireToken answers 401 to requests without one of tokens, except the
// health and version probes (load balancers and monitoring call them).
func requireToken(next http.Handler, tokens []string) http.Handler {
	want := make([][]byte, len(tokens))
	for i, t := range tokens {
		want[i] = []byte(t)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/v1/health" || r.URL.Path == "/v1/version") {
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		match := 0
		for _, t := range want {
			// Every token is compared, in constant time per token.
			match |= subtle.ConstantTimeCompare([]byte(got), t)
		}
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mapsrv"`)
			msg := "management API: a bearer token is required (Authorization: Bearer TOKEN)"
			if ok {
				msg = "management API: token not accepted"
			}
			writeErr(w, http.StatusUnauthorized, "unauthorized", msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}
