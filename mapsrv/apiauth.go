package mapsrv

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/ilamesh/ilamesh/internal/bearer"
)

// MinTokenLen is the shortest management API token accepted.
const MinTokenLen = 16

// ReadTokenFile reads management API bearer tokens: one per line, blank
// lines and lines starting with # ignored. Several tokens let operators
// roll one over without a gap. Each must be at least MinTokenLen printable
// characters without spaces. A line may name the token's role first
// ("read-only TOKEN" or "admin TOKEN"; a bare token is admin): clients
// (ilactl) take the tokens of every role, mapsrv reads the roles with
// ReadTokenRoles.
func ReadTokenFile(path string) ([]string, error) {
	r, err := ReadTokenRoles(path)
	if err != nil {
		return nil, err
	}
	return append(r.Admin, r.ReadOnly...), nil
}

// Token roles of the management API.
const (
	// RoleAdmin may read and change everything.
	RoleAdmin = "admin"
	// RoleReadOnly may only read (GET): an operator who only looks cannot
	// move a task, and a leaked read-only token cannot either.
	RoleReadOnly = "read-only"
)

// TokenRoles are the tokens of a token file by role.
type TokenRoles struct {
	Admin, ReadOnly []string
}

// ReadTokenRoles reads a token file (see ReadTokenFile) by role.
func ReadTokenRoles(path string) (TokenRoles, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return TokenRoles{}, fmt.Errorf("api token file: %w", err)
	}
	return parseTokens(path, b)
}

func parseTokens(path string, b []byte) (TokenRoles, error) {
	var r TokenRoles
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		role, tok, found := strings.Cut(line, " ")
		if !found {
			if line == RoleAdmin || line == RoleReadOnly {
				return TokenRoles{}, fmt.Errorf("api token file %s line %d: role %s without a token", path, n, line)
			}
			role, tok = RoleAdmin, line
		}
		tok = strings.TrimSpace(tok)
		if role != RoleAdmin && role != RoleReadOnly {
			return TokenRoles{}, fmt.Errorf("api token file %s line %d: role %q: want %s or %s before the token", path, n, role, RoleAdmin, RoleReadOnly)
		}
		if len(tok) < MinTokenLen {
			return TokenRoles{}, fmt.Errorf("api token file %s line %d: token of %d characters, want at least %d", path, n, len(tok), MinTokenLen)
		}
		for _, c := range tok {
			if c <= ' ' || c > '~' {
				return TokenRoles{}, fmt.Errorf("api token file %s line %d: want printable ASCII without spaces", path, n)
			}
		}
		if role == RoleReadOnly {
			r.ReadOnly = append(r.ReadOnly, tok)
		} else {
			r.Admin = append(r.Admin, tok)
		}
	}
	if err := sc.Err(); err != nil {
		return TokenRoles{}, fmt.Errorf("api token file %s: %w", path, err)
	}
	if len(r.Admin)+len(r.ReadOnly) == 0 {
		return TokenRoles{}, fmt.Errorf("api token file %s: no token", path)
	}
	return r, nil
}

// requireToken answers 401 to requests without one of the tokens, except
// the health and version probes (load balancers and monitoring call them),
// and 403 to a read-only token's requests that are not GET. It tells the
// audit log (callerKey) who made the request.
func requireToken(next http.Handler, admin, readOnly []string) http.Handler {
	tokens := bearer.New(admin, readOnly)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/v1/health" || r.URL.Path == "/v1/version") {
			next.ServeHTTP(w, r)
			return
		}
		got, present, role := tokens.Check(r)
		if role == bearer.None {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mapsrv"`)
			msg := "management API: a bearer token is required (Authorization: Bearer TOKEN)"
			if present {
				msg = "management API: token not accepted"
			}
			writeErr(w, http.StatusUnauthorized, "unauthorized", msg)
			return
		}
		if c, _ := r.Context().Value(callerKey{}).(*caller); c != nil {
			c.role, c.token = roleName(role), tokenID(got)
		}
		if !bearer.Allowed(role, r.Method) {
			writeErr(w, http.StatusForbidden, "forbidden", "management API: a read-only token cannot change anything")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// roleName is the role's name in the audit log.
func roleName(r bearer.Role) string {
	if r == bearer.ReadOnly {
		return RoleReadOnly
	}
	return RoleAdmin
}

// tokenID names a token in the audit log without revealing it: the first
// 8 bytes of its SHA-256, in hex.
func tokenID(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:8])
}
