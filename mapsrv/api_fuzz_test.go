package mapsrv_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// FuzzAPI sends arbitrary bodies and paths to the management API: every
// answer is a success or a client error with a JSON error body, never a
// server error or a panic.
func FuzzAPI(f *testing.F) {
	f.Add(uint8(0), "/v1/tasks", `{"nve":"a","tenant":"t","name":"vm1","sir":"2001:db8::1","lifetime":"2m"}`)
	f.Add(uint8(0), "/v1/domains", `{"name":"x","sir_prefix":"2001:db8:1::/64","csum":"no-action"}`)
	f.Add(uint8(0), "/v1/nves", `{"name":"d","locators":["fd00:0:0:9"],"underlay":"fd99::9"}`)
	f.Add(uint8(0), "/v1/tasks/t/vm1/move", `{"to":"b","mode":"cold"}`)
	f.Add(uint8(0), "/v1/tasks/t/vm1/expect", `{"nve":"b","ttl":"30s"}`)
	f.Add(uint8(2), "/v1/tasks/t/vm1/expect", ``)
	f.Add(uint8(1), "/v1/mappings/prod/0:0:0:1", ``)
	f.Add(uint8(2), "/v1/tasks/t/vm1", ``)
	f.Add(uint8(0), "/v1/nves", `{"name":"a","locators":["2001:db8::"],"underlay":"fd99::2"}`)
	f.Fuzz(func(t *testing.T, method uint8, path, body string) {
		if !strings.HasPrefix(path, "/") {
			return
		}
		m := []string{http.MethodPost, http.MethodGet, http.MethodDelete}[int(method)%3]
		req, err := http.NewRequest(m, "http://mapsrv"+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		fx := newFixture(t, nil)
		h := mapsrv.NewAPI(fx.svc, mapsrv.APIOptions{Version: "fuzz"})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("%s %s %q: HTTP %d %s", m, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
			var e map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Errorf("%s %s %q: HTTP %d with a body that is not JSON: %s", m, path, body, rec.Code, rec.Body)
			}
		}
	})
}
