package mapsrv_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestAPIExpect: POST /v1/tasks/{tenant}/{name}/expect records the
// orchestrator's expectation of a move (admin token only: a read-only
// token gets 403 and changes nothing), bad bodies get a clear 400, and
// every attempt leaves an audit record; DELETE drops it.
func TestAPIExpect(t *testing.T) {
	f := newFixture(t, nil)
	const admin, ro = "0123456789abcdef-admin", "0123456789abcdef-looker"
	var mu sync.Mutex
	var audit []mapsrv.AuditRecord
	srv := httptest.NewServer(mapsrv.NewAPI(f.svc, mapsrv.APIOptions{Tokens: []string{admin}, ReadOnlyTokens: []string{ro},
		Audit: func(r mapsrv.AuditRecord) { mu.Lock(); audit = append(audit, r); mu.Unlock() }}))
	defer srv.Close()
	do := func(method, path, tok, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	task := func() mapsrv.TaskRecord {
		t.Helper()
		code, body := do("GET", "/v1/tasks/t/vm1", ro, "")
		var rec mapsrv.TaskRecord
		if code != 200 || json.Unmarshal([]byte(body), &rec) != nil {
			t.Fatalf("GET vm1: HTTP %d %s", code, body)
		}
		return rec
	}
	if code, body := do("POST", "/v1/tasks", admin, `{"nve":"a","tenant":"t","name":"vm1","sir":"2001:db8::1"}`); code != 200 {
		t.Fatalf("register: HTTP %d %s", code, body)
	}
	const path = "/v1/tasks/t/vm1/expect"
	steps := []struct {
		name, method, path, tok, body string
		code                          int
		contains                      string
	}{
		{"read-only token", "POST", path, ro, `{"nve":"b"}`, 403, `"forbidden"`},
		{"no token", "POST", path, "", `{"nve":"b"}`, 401, `"unauthorized"`},
		{"bad json", "POST", path, admin, `{"nve":`, 400, "request body"},
		{"empty body", "POST", path, admin, ``, 400, "request body"},
		{"no nve", "POST", path, admin, `{}`, 400, "nve the task moves to is required"},
		{"unknown field", "POST", path, admin, `{"nve":"b","to":"b"}`, 400, `unknown field \"to\"`},
		{"trailing data", "POST", path, admin, `{"nve":"b"} {}`, 400, "trailing"},
		{"ttl not a duration", "POST", path, admin, `{"nve":"b","ttl":"soon"}`, 400, "duration"},
		{"ttl a number", "POST", path, admin, `{"nve":"b","ttl":60}`, 400, "ttl"},
		{"negative ttl", "POST", path, admin, `{"nve":"b","ttl":"-1s"}`, 400, "negative"},
		{"ttl over the maximum", "POST", path, admin, `{"nve":"b","ttl":"11m"}`, 400, "longer than the maximum 10m0s"},
		{"bad nve name", "POST", path, admin, `{"nve":"b c"}`, 400, `"invalid"`},
		{"unknown nve", "POST", path, admin, `{"nve":"zz"}`, 404, "nve zz"},
		{"the nve hosting it", "POST", path, admin, `{"nve":"a"}`, 400, "already there"},
		{"unknown task", "POST", "/v1/tasks/t/zz/expect", admin, `{"nve":"b"}`, 404, `"not_found"`},
		{"read-only drop", "DELETE", path, ro, "", 403, `"forbidden"`},
	}
	for _, s := range steps {
		code, body := do(s.method, s.path, s.tok, s.body)
		if code != s.code || !strings.Contains(body, s.contains) {
			t.Errorf("%s: %s %s: HTTP %d %s; want %d containing %q", s.name, s.method, s.path, code, body, s.code, s.contains)
		}
		if rec := task(); rec.Expect != nil {
			t.Fatalf("%s: refused, yet the task holds expectation %+v", s.name, *rec.Expect)
		}
	}
	code, body := do("POST", path, admin, `{"nve":"b","ttl":"30s"}`)
	if code != 200 || !strings.Contains(body, `"expect": {`) {
		t.Fatalf("expect with the admin token: HTTP %d %s", code, body)
	}
	rec := task()
	if rec.Expect == nil || rec.Expect.NVE != "b" || !rec.Expect.Until.Equal(f.clk.Now().Add(30*time.Second)) {
		t.Fatalf("stored expectation %+v, want b until now+30s", rec.Expect)
	}
	if code, body := do("DELETE", path, admin, ""); code != 204 {
		t.Fatalf("drop the expectation: HTTP %d %s", code, body)
	}
	if rec := task(); rec.Expect != nil {
		t.Errorf("after DELETE: expectation %+v", *rec.Expect)
	}
	if code, body := do("DELETE", path, admin, ""); code != 204 {
		t.Errorf("drop it again: HTTP %d %s, want 204", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	n, roles := 0, map[string]int{}
	for _, r := range audit {
		if strings.HasSuffix(r.Path, "/expect") {
			n++
			roles[r.Role]++
		}
	}
	// Every step, the accepted expect and the two drops.
	if n != len(steps)+3 || roles["read-only"] != 2 || roles[""] != 1 {
		t.Errorf("audit records of /expect: %d %v, want %d with 2 read-only and 1 without a token", n, roles, len(steps)+3)
	}
}
