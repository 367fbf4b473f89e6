package etcdstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
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
