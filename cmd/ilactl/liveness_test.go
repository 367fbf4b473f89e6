package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

func TestNVEListLiveness(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli), Liveness: mapsrv.LivenessConfig{Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mapsrv.NewAPI(svc, mapsrv.APIOptions{}))
	t.Cleanup(srv.Close)
	must := func(args ...string) string {
		t.Helper()
		out, err := ilactl(t, append([]string{"--api", srv.URL}, args...)...)
		if err != nil {
			t.Fatalf("ilactl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	must("nve", "add", "a", "--locator", "fd00:0:0:1", "--underlay", "fd99::1")
	must("nve", "add", "b", "--locator", "fd00:0:0:2", "--underlay", "fd99::2")
	if _, err := svc.Heartbeat(t.Context(), "a", 0); err != nil {
		t.Fatal(err)
	}
	// Re-adding an NVE keeps its liveness (written by heartbeats only).
	must("nve", "add", "a", "--locator", "fd00:0:0:1", "--underlay", "fd99::1")
	out := must("nve", "list")
	var a, b string
	for _, line := range strings.Split(out, "\n") {
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "a":
			a = line
		case len(f) > 0 && f[0] == "b":
			b = line
		}
	}
	if f := strings.Fields(a); len(f) != 9 || f[5] != "alive" || f[6] != "1" || f[7] == "-" {
		t.Errorf("nve a row %q: want state alive, epoch 1, a last-heard time\n%s", a, out)
	}
	if f := strings.Fields(b); len(f) != 9 || f[5] != "-" || f[6] != "-" {
		t.Errorf("nve b (never heard) row %q: want dashes\n%s", b, out)
	}
}
