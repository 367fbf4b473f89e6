//go:build linux

package main

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

// TestWatchResumesAfterEtcdRestart: ilad's watch (its etcd client and
// watch options, as run() makes them) survives etcd going away for 3 s,
// and a move committed right after etcd is back reaches it. The time it
// takes is logged (issue 18 weakness 6: it was 6-12 s; the bound here is
// generous, the figure is in the log).
func TestWatchResumesAfterEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	dir, err := os.MkdirTemp("", "ilad-resume")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv := etcdtest.StartServer(t, dir)
	eps := srv.Endpoints()

	cli, err := etcdClient(&config{Etcd: eps}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	w := etcdstore.NewWatcher(cli, cli, watchOptions("/ila/v1/", nil))
	var (
		mu   sync.Mutex
		seen = map[ila.Locator]time.Time{}
	)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, func(ev ila.Event) {
			if ev.Type == ila.EventTaskUpsert && ev.Task != nil {
				mu.Lock()
				if _, ok := seen[ev.Task.Locator]; !ok {
					seen[ev.Task.Locator] = time.Now()
				}
				mu.Unlock()
			}
		})
	}()
	defer func() { cancel(); <-done }()
	at := func(loc ila.Locator, within time.Duration) (time.Time, bool) {
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			ts, ok := seen[loc]
			mu.Unlock()
			if ok {
				return ts, true
			}
		}
		return time.Time{}, false
	}

	locs := []ila.Locator{0x2001_0db8_0000_0001, 0x2001_0db8_0000_0002}
	writer := func() *mapsrv.Service {
		svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(etcdtest.NewClient(t, eps))})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	svc := writer()
	sir, _ := ila.ParseSIRPrefix("3333:0:0:1::/64")
	if err := svc.AddDomain(t.Context(), ila.Domain{Name: "prod", SIR: sir, Csum: ila.CsumNeutralMap}); err != nil {
		t.Fatal(err)
	}
	for i, l := range locs {
		name := []string{"nve1", "nve2"}[i]
		if err := svc.AddNVE(t.Context(), mapsrv.NVERecord{NVE: ila.NVE{Name: name, Locators: []ila.Locator{l}, Underlay: netip.MustParseAddr("fd00::" + name[3:])}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Register(t.Context(), mapsrv.Registration{NVE: "nve1", Tenant: "t1", Name: "web", SIR: sir.Addr(0x1001)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := at(locs[0], 10*time.Second); !ok {
		t.Fatal("the watch never saw the task")
	}

	srv.Close()
	time.Sleep(3 * time.Second)
	etcdtest.StartServer(t, dir) // the same data directory: etcd comes back
	back := time.Now()
	svc = writer()
	if _, err := svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "web", To: "nve2"}); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	ts, ok := at(locs[1], 30*time.Second)
	if !ok {
		t.Fatal("a move committed after etcd came back never reached the watch")
	}
	t.Logf("watch resumed: a move committed %v after etcd restarted (3 s outage) reached the watch %v after etcd was back (%v after the move call returned)",
		committed.Sub(back), ts.Sub(back), ts.Sub(committed))
}
