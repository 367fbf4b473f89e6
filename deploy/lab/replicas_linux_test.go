//go:build linux

package lab

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReplicaTransport: the lab's API client sends a request (with its
// body) to the next replica when one refuses the connection, and stays
// with the one that answered.
func TestReplicaTransport(t *testing.T) {
	var got []string
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		io.WriteString(w, "ok")
	}))
	defer live.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // its port refuses connections: a killed replica
	l := &Lab{topo: &Topology{Mapsrv: Mapsrv{Replicas: []MapsrvReplica{{API: deadURL}, {API: live.URL}}}}}
	rt := l.replicaTransport(http.DefaultTransport)
	c := &http.Client{Transport: rt}
	for i := range 2 {
		resp, err := c.Post(deadURL+"/v1/tasks/t/x/move", "application/json", strings.NewReader(`{"to":"nve1"}`))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if rt.cur.Load() != 1 {
			t.Errorf("request %d: current replica %d, want 1", i, rt.cur.Load())
		}
	}
	want := `POST /v1/tasks/t/x/move {"to":"nve1"}`
	if len(got) != 2 || got[0] != want || got[1] != want {
		t.Errorf("the live replica got %q, want twice %q", got, want)
	}
	// Both refuse: the error says so.
	live.Close()
	if _, err := c.Get(deadURL + "/v1/domains"); err == nil {
		t.Error("no error with every replica down")
	}
}
