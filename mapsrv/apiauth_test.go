package mapsrv_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ilamesh/ilamesh/mapsrv"
)

func TestAPITokens(t *testing.T) {
	f := newFixture(t, nil)
	const tokA, tokB = "0123456789abcdef-first", "fedcba9876543210-second"
	srv := httptest.NewServer(mapsrv.NewAPI(f.svc, mapsrv.APIOptions{Version: "v9", Tokens: []string{tokA, tokB}}))
	defer srv.Close()
	do := func(method, path, auth, body string) (int, string) {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, srv.URL+path, r)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, method, path, auth, body string
		code                           int
		contains                       string
	}{
		{"health needs no token", "GET", "/v1/health", "", "", 200, `"ok"`},
		{"version needs no token", "GET", "/v1/version", "", "", 200, `"v9"`},
		{"list without token", "GET", "/v1/tasks", "", "", 401, "bearer token is required"},
		{"move without token", "POST", "/v1/tasks/t/vm1/move", "", `{"to":"b"}`, 401, `"unauthorized"`},
		{"wrong token", "GET", "/v1/tasks", "Bearer 0123456789abcdef-firsT", "", 401, "not accepted"},
		{"token prefix", "GET", "/v1/tasks", "Bearer 0123456789abcdef", "", 401, "not accepted"},
		{"basic auth", "GET", "/v1/tasks", "Basic " + tokA, "", 401, "required"},
		{"register with the first token", "POST", "/v1/tasks", "Bearer " + tokA, `{"nve":"a","tenant":"t","name":"vm1","sir":"2001:db8::1"}`, 200, `"vm1"`},
		{"move with the second token", "POST", "/v1/tasks/t/vm1/move", "Bearer " + tokB, `{"to":"b"}`, 200, `"nve": "b"`},
		{"list with a token", "GET", "/v1/tasks", "Bearer " + tokA, "", 200, `"vm1"`},
		{"health with a token", "GET", "/v1/health", "Bearer " + tokA, "", 200, `"ok"`},
	}
	for _, tc := range tests {
		code, body := do(tc.method, tc.path, tc.auth, tc.body)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("%s: %s %s = %d %s, want %d containing %q", tc.name, tc.method, tc.path, code, body, tc.code, tc.contains)
		}
	}
	// The refused move changed nothing: vm1 moved once, with the token.
	if _, body := do("GET", "/v1/tasks/t/vm1", "Bearer "+tokA, ""); !strings.Contains(body, `"version": 2`) {
		t.Errorf("vm1 after one accepted move: %s", body)
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	toks, err := mapsrv.ReadTokenFile(write("ok", "# ops team\n\n  0123456789abcdef  \nanother-token-0000000\n"))
	if err != nil || len(toks) != 2 || toks[0] != "0123456789abcdef" {
		t.Errorf("good file: %q, %v", toks, err)
	}
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "# nothing\n\n", "no token"},
		{"short", "0123456789\n", "line 1: token of 10 characters"},
		{"space", "# x\n0123456789 abcdef0\n", "line 2: role \"0123456789\""},
		{"unknown role", "root 0123456789abcdef\n", "want admin or read-only"},
		{"role without token", "read-only \n", "role read-only without a token"},
		{"control", "0123456789abcdef\x01\n", "printable"},
	} {
		if _, err := mapsrv.ReadTokenFile(write(tc.name, tc.content)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	roles, err := mapsrv.ReadTokenRoles(write("roles", "admin 0123456789abcdef\nread-only ro-0123456789abcdef\nbare-0123456789abcdef\n"))
	if err != nil || !slices.Equal(roles.Admin, []string{"0123456789abcdef", "bare-0123456789abcdef"}) || !slices.Equal(roles.ReadOnly, []string{"ro-0123456789abcdef"}) {
		t.Errorf("roles: %+v, %v", roles, err)
	}
	if toks, err := mapsrv.ReadTokenFile(write("roles", "read-only ro-0123456789abcdef\n")); err != nil || len(toks) != 1 || toks[0] != "ro-0123456789abcdef" {
		t.Errorf("a client's read-only token file: %q, %v", toks, err)
	}
	if _, err := mapsrv.ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestAPIReadOnlyTokenAndAudit is finding 9 of issue 17: a read-only token
// reads but cannot change anything (a leaked one cannot move a task), and
// every request that may change something leaves one audit record naming
// the token's role and id, accepted or not.
func TestAPIReadOnlyTokenAndAudit(t *testing.T) {
	f := newFixture(t, nil)
	const admin, ro = "0123456789abcdef-admin", "0123456789abcdef-looker"
	var mu sync.Mutex
	var recs []mapsrv.AuditRecord
	srv := httptest.NewServer(mapsrv.NewAPI(f.svc, mapsrv.APIOptions{Tokens: []string{admin}, ReadOnlyTokens: []string{ro},
		Audit: func(r mapsrv.AuditRecord) { mu.Lock(); recs = append(recs, r); mu.Unlock() }}))
	defer srv.Close()
	do := func(method, path, tok, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		method, path, tok, body string
		code                    int
	}{
		{"POST", "/v1/tasks", admin, `{"nve":"a","tenant":"t","name":"vm1","sir":"2001:db8::1"}`, 200},
		{"GET", "/v1/tasks", ro, "", 200},
		{"GET", "/v1/tasks/t/vm1", ro, "", 200},
		{"POST", "/v1/tasks/t/vm1/move", ro, `{"to":"b"}`, 403},
		{"DELETE", "/v1/tasks/t/vm1", ro, "", 403},
		{"POST", "/v1/policies", ro, `{"tenants":["a","b"]}`, 403},
		{"POST", "/v1/tasks/t/vm1/move", "", `{"to":"b"}`, 401},
		{"POST", "/v1/tasks/t/vm1/move", admin, `{"to":"b"}`, 200},
	}
	for _, s := range steps {
		if got := do(s.method, s.path, s.tok, s.body); got != s.code {
			t.Errorf("%s %s with %q: HTTP %d, want %d", s.method, s.path, s.tok, got, s.code)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	type rec struct {
		Method, Path string
		Status       int
		Role         string
		Token        bool
	}
	var got []rec
	for _, r := range recs {
		got = append(got, rec{r.Method, r.Path, r.Status, r.Role, r.Token != ""})
		if strings.Contains(r.Token, "admin") || strings.Contains(r.Token, "looker") {
			t.Errorf("audit record holds the token itself: %+v", r)
		}
	}
	want := []rec{
		{"POST", "/v1/tasks", 200, "admin", true},
		{"POST", "/v1/tasks/t/vm1/move", 403, "read-only", true},
		{"DELETE", "/v1/tasks/t/vm1", 403, "read-only", true},
		{"POST", "/v1/policies", 403, "read-only", true},
		{"POST", "/v1/tasks/t/vm1/move", 401, "", false},
		{"POST", "/v1/tasks/t/vm1/move", 200, "admin", true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}
}
