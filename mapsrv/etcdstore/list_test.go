package etcdstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// countingKV counts the unary range requests (Get) made through it.
type countingKV struct {
	clientv3.KV
	gets atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.gets.Add(1)
	return c.KV.Get(ctx, key, opts...)
}

// TestListStreamsAndFallsBack checks that a list reads every key under
// the prefix, in order, at one revision: streamed from etcd (no paged
// range requests, whose cost grows with the square of the key count), and
// paged through a server without RangeStream (the gRPC proxy).
func TestListStreamsAndFallsBack(t *testing.T) {
	cli, eps := etcdtest.Start(t)
	ctx := t.Context()
	const n = 2500 // more than two pages
	var want []string
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100; j++ {
			k := fmt.Sprintf("/ila/v1/map/prod/%016x", j)
			want = append(want, k)
			ops = append(ops, clientv3.OpPut(k, "v"))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "/ila/v1x/outside", "v"); err != nil {
		t.Fatal(err)
	}
	head, err := cli.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	proxy := etcdtest.NewClient(t, etcdtest.StartProxy(t, eps))
	for _, c := range []struct {
		name      string
		kv        clientv3.KV
		wantPaged bool
	}{
		{"etcd", cli.KV, false},
		{"grpc-proxy", proxy.KV, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			kv := &countingKV{KV: c.kv}
			kvs, rev, err := etcdstore.New(kv).List(ctx, "/ila/v1/")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range kvs {
				got = append(got, kv.Key)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("listed keys (-want +got):\n%s", diff)
			}
			if rev != head.Header.Revision {
				t.Errorf("list revision %d, want %d", rev, head.Header.Revision)
			}
			if gets := kv.gets.Load(); (gets > 0) != c.wantPaged {
				t.Errorf("%d paged range requests; paged: want %v", gets, c.wantPaged)
			}
		})
	}
}

// TestWatchRelistLarge checks the list as the watcher decodes it (while it
// streams in, on several workers): every record delivered once, in key
// order; and a relist after a compaction delivers exactly the difference:
// a change and a delete, not the record that turned malformed (the
// consumer keeps what it had) nor the thousands unchanged.
func TestWatchRelistLarge(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	ctx := t.Context()
	const n = 3000 // many decoding jobs
	recs := make([]mapsrv.TaskRecord, n)
	put := func(recs ...mapsrv.TaskRecord) {
		t.Helper()
		for i := 0; i < len(recs); i += 100 {
			var ops []clientv3.Op
			for _, r := range recs[i:min(i+100, len(recs))] {
				v, err := json.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				ops = append(ops, clientv3.OpPut(mapsrv.TaskKey(r.Domain, r.Identifier), string(v)))
			}
			if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wantFirst []string
	for i := range recs {
		id := ila.Identifier(0x1000 + i)
		recs[i] = mapsrv.TaskRecord{Task: ila.Task{Domain: "prod", Name: fmt.Sprintf("t%d", i), Tenant: "t1", Identifier: id,
			SIR: sirPrefix.Addr(id), Locator: locA, NVE: "a", Version: 1, State: ila.StateActive}}
		wantFirst = append(wantFirst, fmt.Sprintf("task-upsert t%d@a v1", i))
	}
	put(recs...)
	wantFirst = append(wantFirst, "synced")

	hold := make(chan struct{})
	first := true
	e := watch(t, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{MinBackoff: 10 * time.Millisecond}), func(ev ila.Event) {
		if ev.Type == ila.EventSynced && first {
			first = false
			<-hold
		}
	})
	evs := e.waitFor(t, "the first list", func(evs []ila.Event) bool { return len(evs) >= n })
	if diff := cmp.Diff(wantFirst[:n], summary(evs)); diff != "" {
		t.Fatalf("the first list's events (-want +got):\n%s", diff)
	}
	moved := recs[1500]
	moved.NVE, moved.Locator, moved.Version = "b", locB, 2
	put(moved)
	if _, err := cli.Put(ctx, mapsrv.TaskKey("prod", recs[5].Identifier), "garbage"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, mapsrv.TaskKey("prod", recs[7].Identifier)); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	close(hold)
	evs = e.waitFor(t, "the relist", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 2 })
	want := []string{"task-upsert t1500@b v2", "task-delete t7@a v1", "synced"}
	if diff := cmp.Diff(want, summary(evs[n+1:])); diff != "" {
		t.Errorf("the relist's events (-want +got):\n%s", diff)
	}
}

// streamRecorder records the ranges streamed through it.
type streamRecorder struct {
	clientv3.KV
	mu   sync.Mutex
	keys []string
}

func (r *streamRecorder) GetStream(ctx context.Context, key string, opts ...clientv3.OpOption) (clientv3.GetStreamChan, error) {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	return r.KV.GetStream(ctx, key, opts...)
}

// TestWatchListSkipsIndexes: the watcher lists the records (domains,
// tasks, NVEs, policies), not the name and MAC indexes beside them (two
// keys per task in a real store), and still delivers every record.
func TestWatchListSkipsIndexes(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	register(t, svc, "a", "vm1", "2001:db8::1")
	register(t, svc, "b", "vm2", "2001:db8::2")
	if resp, err := cli.Get(t.Context(), mapsrv.NamePrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 2 {
		t.Fatalf("name index entries: %v, %v; want 2", resp, err)
	}
	rec := &streamRecorder{KV: cli.KV}
	e := watch(t, etcdstore.NewWatcher(rec, cli, etcdstore.WatchOptions{}), nil)
	evs := e.waitFor(t, "synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 1 })
	want := []string{"domain-upsert prod", "task-upsert vm1@a v1", "task-upsert vm2@b v1", "nve-upsert a", "nve-upsert b", "nve-upsert c", "synced"}
	if diff := cmp.Diff(want, summary(evs)); diff != "" {
		t.Errorf("listed events (-want +got):\n%s", diff)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, k := range rec.keys {
		// A range from k covers an index if either is a prefix of the other.
		covers := func(p string) bool { return strings.HasPrefix(p, k) || strings.HasPrefix(k, p) }
		if covers(mapsrv.NamePrefix) || covers(mapsrv.MACPrefix) {
			t.Errorf("the watcher streamed %q: it covers the indexes", k)
		}
	}
}
