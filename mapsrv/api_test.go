package mapsrv_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/mapsrv"
)

func TestAPI(t *testing.T) {
	f := newFixture(t, nil)
	srv := httptest.NewServer(mapsrv.NewAPI(f.svc, mapsrv.APIOptions{Version: "v9"}))
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, srv.URL+path, r)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, method, path, body string
		code                     int
		contains                 string
	}{
		{"health", "GET", "/v1/health", "", 200, `"ok"`},
		{"version", "GET", "/v1/version", "", 200, `"v9"`},
		{"register", "POST", "/v1/tasks", `{"nve":"a","tenant":"t","name":"vm1","sir":"2001:db8::1","lifetime":"2m"}`, 200, `"lifetime": "2m0s"`},
		{"register unnamed", "POST", "/v1/tasks", `{"nve":"a","sir":"2001:db8::2"}`, 200, `"identifier": "0:0:0:2"`},
		{"register bad json", "POST", "/v1/tasks", `{"nve":`, 400, `"invalid"`},
		{"register trailing", "POST", "/v1/tasks", `{"nve":"a","sir":"2001:db8::3"} {}`, 400, "trailing"},
		{"register bad lifetime", "POST", "/v1/tasks", `{"nve":"a","sir":"2001:db8::3","lifetime":"soon"}`, 400, "duration"},
		{"register forbidden locator", "POST", "/v1/tasks", `{"nve":"a","sir":"2001:db8::3","locator":"fd00:0:0:2"}`, 403, `"forbidden"`},
		// Finding 3 of issue 17: POST /v1/tasks naming an existing SIR
		// renamed and moved the task. Refused; "get" below still finds
		// vm1 on a.
		{"register existing sir under another name", "POST", "/v1/tasks", `{"nve":"a","tenant":"x","name":"other","sir":"2001:db8::1"}`, 409, "is task t/vm1's"},
		{"register existing sir, other name, other nve", "POST", "/v1/tasks", `{"nve":"b","tenant":"t","name":"other","sir":"2001:db8::1"}`, 409, "is task t/vm1's"},
		{"register existing task on another nve", "POST", "/v1/tasks", `{"nve":"b","tenant":"t","name":"vm1","sir":"2001:db8::1","mode":"hot"}`, 409, "not justified"},
		{"get other", "GET", "/v1/tasks/x/other", "", 404, `"not_found"`},
		{"get", "GET", "/v1/tasks/t/vm1", "", 200, `"nve": "a"`},
		{"get missing", "GET", "/v1/tasks/t/zz", "", 404, `"not_found"`},
		{"mapping", "GET", "/v1/mappings/prod/0:0:0:2", "", 200, `"sir": "2001:db8::2"`},
		{"mapping bad id", "GET", "/v1/mappings/prod/xyz", "", 400, `"invalid"`},
		{"move", "POST", "/v1/tasks/t/vm1/move", `{"to":"b"}`, 200, `"version": 2`},
		{"move same", "POST", "/v1/tasks/t/vm1/move", `{"to":"b"}`, 400, "already on"},
		{"move bad mode", "POST", "/v1/tasks/t/vm1/move", `{"to":"c","mode":"x"}`, 400, "hot, warm or cold"},
		{"clear not duplicate", "POST", "/v1/tasks/t/vm1/clear-duplicate", "", 400, "not duplicate"},
		{"list", "GET", "/v1/tasks", "", 200, `"vm1"`},
		{"nves", "GET", "/v1/nves", "", 200, `"locator_domains"`},
		{"nve", "GET", "/v1/nves/b", "", 200, `"name": "b"`},
		{"domains", "GET", "/v1/domains", "", 200, `"2001:db8::/64"`},
		{"domain conflict", "POST", "/v1/domains", `{"name":"prod","sir_prefix":"2001:db8:1::/64"}`, 409, `"conflict"`},
		{"domain bad mode", "POST", "/v1/domains", `{"name":"x","sir_prefix":"2001:db8:1::/64","csum":"weird"}`, 400, `"invalid"`},
		{"watch unconfigured", "GET", "/v1/watch", "", 501, "no watch source"},
		{"delete mapping", "DELETE", "/v1/mappings/prod/0:0:0:2", "", 204, ""},
		{"deregister", "DELETE", "/v1/tasks/t/vm1", "", 204, ""},
		{"deregister again", "DELETE", "/v1/tasks/t/vm1", "", 404, `"not_found"`},
		{"unknown", "GET", "/v2/x", "", 404, "no endpoint"},
		{"policies empty", "GET", "/v1/policies", "", 200, "[]"},
		{"policy add", "POST", "/v1/policies", `{"tenants":["red","blue"]}`, 201, `"blue",`},
		{"policy add again", "POST", "/v1/policies", `{"tenants":["blue","red"]}`, 201, `"red"`},
		{"policy with itself", "POST", "/v1/policies", `{"tenants":["red","red"]}`, 400, "reaches itself"},
		{"policy bad tenant", "POST", "/v1/policies", `{"tenants":["red","a b"]}`, 400, `"invalid"`},
		{"policy one tenant", "POST", "/v1/policies", `{"tenants":["red"]}`, 400, `"invalid"`},
		{"policies", "GET", "/v1/policies", "", 200, `"red"`},
		{"policy delete", "DELETE", "/v1/policies/red/blue", "", 204, ""},
		{"policy delete again", "DELETE", "/v1/policies/blue/red", "", 404, `"not_found"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(tc.method, tc.path, tc.body)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Errorf("%s %s: HTTP %d %s; want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.contains)
			}
			if code >= 400 {
				var eb mapsrv.ErrorBody
				if err := json.NewDecoder(bytes.NewReader([]byte(body))).Decode(&eb); err != nil || eb.Error == "" || eb.Code == "" {
					t.Errorf("error body %q: %v", body, err)
				}
			}
		})
	}
}
