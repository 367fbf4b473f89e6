//go:build linux

package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestCLI drives the ilalab binary: up prints the topology, status and move
// work on the recorded state, down removes everything and can run twice.
func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds a data center in network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	name := netns.Unique("c")
	state := filepath.Join(t.TempDir(), "s")
	bin := filepath.Join(binDir, "ilalab")
	common := []string{"--name", name, "--state-dir", state, "-q"}
	ilalab := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...) // also used in Cleanup, after t.Context ends
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Logf("ilalab %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out), err
	}
	t.Cleanup(func() {
		_, _ = ilalab(append([]string{"down"}, common...)...)
	})
	out, err := ilalab(append([]string{"up", "--nves", "2", "--tasks-per-nve", "2", "--bin-dir", binDir, "--host-link=false"}, common...)...)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	var topo lab.Topology
	if err := json.Unmarshal([]byte(out), &topo); err != nil {
		t.Fatalf("up printed no topology JSON: %v\n%s", err, out)
	}
	file, err := os.ReadFile(filepath.Join(state, "topology.json"))
	if err != nil {
		t.Fatal(err)
	}
	var topo2 lab.Topology
	if err := json.Unmarshal(file, &topo2); err != nil {
		t.Fatal(err)
	}
	if topo.FabricNetns != name+"-fabric" || len(topo.NVEs) != 2 || len(topo.Tasks) != 4 || topo2.FabricNetns != topo.FabricNetns {
		t.Fatalf("topology: fabric %q, %d NVEs, %d tasks (file: %q)", topo.FabricNetns, len(topo.NVEs), len(topo.Tasks), topo2.FabricNetns)
	}
	if topo.Mapsrv.API == "" || topo.Mapsrv.Registration == "" || len(topo.Etcd.Endpoints) == 0 || topo.DNS.Addr == "" || topo.DNS.Zone != lab.Zone {
		t.Errorf("topology lacks control endpoints: %+v %+v %+v", topo.Mapsrv, topo.Etcd, topo.DNS)
	}
	if roles, err := mapsrv.ReadTokenRoles(topo.Mapsrv.TokenFile); err != nil || len(roles.Admin) != 1 || len(roles.ReadOnly) != 1 {
		t.Errorf("mapsrv API token file %q: %+v, %v; want one admin and one read-only token", topo.Mapsrv.TokenFile, roles, err)
	}
	if roles, err := mapsrv.ReadTokenRoles(topo.Mapsrv.ReadOnlyTokenFile); err != nil || len(roles.Admin) != 0 || len(roles.ReadOnly) != 1 {
		t.Errorf("read-only API token file %q: %+v, %v", topo.Mapsrv.ReadOnlyTokenFile, roles, err)
	}
	if !strings.HasPrefix(topo.Mapsrv.API, "https://") || topo.Mapsrv.CAFile == "" {
		t.Errorf("mapsrv API %q with CA %q, want https and a CA file", topo.Mapsrv.API, topo.Mapsrv.CAFile)
	}
	for _, tk := range topo.Tasks {
		if !tk.SIR.IsValid() || tk.Netns == "" || tk.NVE == "" || tk.Tenant == "" {
			t.Errorf("task %+v incomplete", tk)
		}
	}

	out, err = ilalab(append([]string{"status", "-o", "json"}, common...)...)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st lab.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status JSON: %v", err)
	}
	for _, p := range []string{"mapsrv", "dnsbridge", "router", "ilad-nve1", "ilad-nve2"} {
		if !strings.HasPrefix(st.Procs[p], "running") {
			t.Errorf("status: %s is %q, want running", p, st.Procs[p])
		}
	}
	// The ILA router is ilad in the router role; its metrics answer in
	// the fabric namespace with the whole table (4 tasks).
	if topo.Router.Metrics == "" {
		t.Errorf("topology: no router metrics address: %+v", topo.Router)
	} else {
		var page []byte
		deadline := time.Now().Add(5 * time.Second)
		for {
			page, err = exec.Command("ip", "netns", "exec", topo.FabricNetns, "curl", "-s", "http://"+topo.Router.Metrics+"/metrics").Output()
			ok := err == nil && strings.Contains(string(page), "\nila_agent_watch_synced 1\n") && strings.Contains(string(page), "\nila_agent_mappings 4\n")
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("router metrics %s: %v, want synced with 4 mappings:\n%s", topo.Router.Metrics, err, page)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A lab whose daemons run is not a leftover.
	if out, err := ilalab("down", "--all"); err != nil || !strings.Contains(out, "kept lab "+name+" (state "+state+"): ") {
		t.Errorf("down --all with the lab up: %v, want it kept:\n%s", err, out)
	}
	if _, err := ilalab(append([]string{"move", "t1", "--to", "nve2"}, common...)...); err != nil {
		t.Fatalf("move: %v", err)
	}
	if _, err := ilalab(append([]string{"move", "t1", "--to", "nve2"}, common...)...); err == nil {
		t.Errorf("second move to the same NVE: no error")
	}
	out, err = ilalab(append([]string{"status", "-o", "json"}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if tk, err := st.Topology.TaskByName("t1"); err != nil || tk.NVE != "nve2" {
		t.Errorf("after move, t1 on %v (%v), want nve2", tk, err)
	}

	for i := range 2 {
		if _, err := ilalab(append([]string{"down"}, common...)...); err != nil {
			t.Fatalf("down #%d: %v", i+1, err)
		}
	}
	names, _ := netns.List()
	for _, n := range names {
		if strings.HasPrefix(n, name+"-") {
			t.Errorf("namespace %s left after down", n)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir left after down: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/bpf", name)); !os.IsNotExist(err) {
		t.Errorf("pins left after down: %v", err)
	}
}
