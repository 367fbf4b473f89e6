//go:build linux

package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/where"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

// TestWhereAndAppliedRevision: real ilads (two NVEs and the router) over
// a real etcd: every datapath equals the store after an attach (read back
// from the eBPF tables through the local APIs), and each NVE's applied
// revision reaches mapsrv in its heartbeats and is written to its status
// key; the metric says the same.
func TestWhereAndAppliedRevision(t *testing.T) {
	l := newLab(t, 2, nil)
	tk := l.addTask(l.nves[0], "web", 0x1001)
	l.waitMapping(tk, l.nves[0])
	l.startRouter(1)

	rc, err := locator.NewClient(filepath.Join(l.dir, "router.sock"))
	if err != nil {
		t.Fatal(err)
	}
	store := etcdstore.NewWatcher(l.cli, l.cli, etcdstore.WatchOptions{})
	nodes := where.NVEs(where.SocketPattern(filepath.Join(l.dir, "{nve}.sock")), where.Node{Name: "router", Agent: rc})
	ctx := t.Context()
	rep, err := where.Converge(ctx, store, nodes, where.Query{}, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("not consistent: %v: %q", err, rep.Problems())
	}
	if len(rep.Tasks) != 1 || len(rep.Nodes) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	tr := rep.Tasks[0]
	for _, h := range tr.Nodes {
		if h.Locator != l.nves[0].loc || h.Status != where.StatusOK || h.Applied < tr.Revision {
			t.Errorf("%s: %+v (task revision %d)", h.Node, h, tr.Revision)
		}
		if h.Local != (h.Node == "nve1") {
			t.Errorf("%s: local %v", h.Node, h.Local)
		}
	}
	for _, n := range rep.Nodes {
		if n.Name == "router" && n.Role != "router" {
			t.Errorf("router role %q", n.Role)
		}
	}

	// The applied revision reaches mapsrv (heartbeats, 1 s) and its
	// status key.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := l.svc.AppliedRevisions()["nve1"]
		resp, err := l.cli.Get(ctx, mapsrv.NVEStatusKey("nve1"))
		var stored mapsrv.NVEStatus
		if err == nil && len(resp.Kvs) == 1 {
			stored, _ = mapsrv.DecodeNVEStatus(string(resp.Kvs[0].Key), resp.Kvs[0].Value)
		}
		if st.Applied >= tr.Revision && stored.Applied >= tr.Revision {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied revision at mapsrv %+v, stored %+v, want at least %d", st, stored, tr.Revision)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v, ok := metricValue(l.metrics(l.nves[0]), "ila_agent_applied_revision"); !ok || int64(v) < tr.Revision {
		t.Errorf("ila_agent_applied_revision = %v (present %v), want at least %d", v, ok, tr.Revision)
	}
}
