package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
)

func call(name string, keys, writes []string) *txnCall {
	return &txnCall{ctx: context.WithValue(context.Background(), callName{}, name), keys: append(keys, writes...), writes: writes, size: 10}
}

type callName struct{}

func names(cs []*txnCall) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ctx.Value(callName{}).(string))
	}
	return out
}

func TestBatchTake(t *testing.T) {
	nve := []string{"/nve/a"}
	tests := []struct {
		name  string
		max   int
		calls []*txnCall
		want  [][]string // successive batches
	}{
		{
			name: "disjoint writes share compared keys",
			max:  8,
			calls: []*txnCall{
				call("r1", nve, []string{"/task/1", "/name/1"}),
				call("r2", nve, []string{"/task/2", "/name/2"}),
				call("r3", nve, []string{"/task/3"}),
			},
			want: [][]string{{"r1", "r2", "r3"}},
		},
		{
			name: "same key written twice goes to the next batch",
			max:  8,
			calls: []*txnCall{
				call("r1", nil, []string{"/task/1"}),
				call("r1-again", nil, []string{"/task/1"}),
				call("r2", nil, []string{"/task/2"}),
			},
			want: [][]string{{"r1", "r2"}, {"r1-again"}},
		},
		{
			name: "a write of a key another call compares is not batched with it",
			max:  8,
			calls: []*txnCall{
				call("r1", nve, []string{"/task/1"}),
				call("pin", nil, []string{"/nve/a", "/task/2"}),
				call("r3", nve, []string{"/task/3"}),
			},
			want: [][]string{{"r1", "r3"}, {"pin"}},
		},
		{
			name: "compare of a key written earlier in the batch",
			max:  8,
			calls: []*txnCall{
				call("pin", nil, []string{"/nve/a"}),
				call("r1", nve, []string{"/task/1"}),
			},
			want: [][]string{{"pin"}, {"r1"}},
		},
		{
			name: "max calls per batch",
			max:  2,
			calls: []*txnCall{
				call("r1", nil, []string{"/task/1"}),
				call("r2", nil, []string{"/task/2"}),
				call("r3", nil, []string{"/task/3"}),
			},
			want: [][]string{{"r1", "r2"}, {"r3"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &batcher{max: tt.max, queue: tt.calls}
			var got [][]string
			for len(b.queue) > 0 {
				got = append(got, names(b.take()))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("batches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBatchTakeAnswersCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := &txnCall{ctx: ctx, done: make(chan txnResult, 1)}
	live := call("live", nil, []string{"/k"})
	b := &batcher{max: 8, queue: []*txnCall{gone, live}}
	if got := names(b.take()); !cmp.Equal(got, []string{"live"}) {
		t.Errorf("batch %v, want [live]", got)
	}
	select {
	case r := <-gone.done:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("canceled call: error %v, want context.Canceled", r.err)
		}
	default:
		t.Error("canceled call not answered")
	}
}

// TestBatchDoCanceled: a call whose context is done before it is queued
// is answered and leaves no runner behind (the runner got an empty first
// batch and indexed it: a panic that killed ilad's tests).
func TestBatchDoCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := &batcher{max: 8}
	if r := b.do(&txnCall{ctx: ctx}); !errors.Is(r.err, context.Canceled) {
		t.Errorf("canceled call: error %v, want context.Canceled", r.err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		n := b.running
		b.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runners left after a canceled call", n)
		}
	}
}

// TestBatchCommit commits one batch of three calls, one of whose
// comparisons fails, against a real etcd, directly and through a
// namespaced KV: the others apply at one revision, the failed one writes
// nothing.
func TestBatchCommit(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	for _, tc := range []struct {
		name string
		kv   clientv3.KV
	}{
		{"client", cli},
		{"namespace", namespace.NewKV(cli, "/ns/")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := New(tc.kv)
			p := "/" + tc.name + "/"
			if _, err := tc.kv.Put(ctx, p+"exists", "v0"); err != nil {
				t.Fatal(err)
			}
			mk := func(conds []mapsrv.Cond, ops []mapsrv.Op) *txnCall {
				c := &txnCall{ctx: ctx, done: make(chan txnResult, 1)}
				for _, cd := range conds {
					c.cmps = append(c.cmps, clientv3.Compare(clientv3.ModRevision(cd.Key), "=", cd.Revision))
				}
				for _, op := range ops {
					c.ops = append(c.ops, clientv3.OpPut(op.Key, string(op.Value)))
				}
				return c
			}
			batch := []*txnCall{
				mk([]mapsrv.Cond{{Key: p + "a"}}, []mapsrv.Op{{Key: p + "a", Value: []byte("A")}}),
				mk([]mapsrv.Cond{{Key: p + "exists"}}, []mapsrv.Op{{Key: p + "b", Value: []byte("B")}}), // exists: fails
				mk([]mapsrv.Cond{{Key: p + "c"}}, []mapsrv.Op{{Key: p + "c", Value: []byte("C")}, {Key: p + "d", Value: []byte("D")}}),
			}
			s.batch.commit(batch)
			var got []bool
			var revs []int64
			for _, c := range batch {
				r := <-c.done
				if r.err != nil {
					t.Fatalf("batch: %v", r.err)
				}
				got = append(got, r.ok)
				if r.ok {
					revs = append(revs, r.rev)
				}
			}
			if diff := cmp.Diff([]bool{true, false, true}, got); diff != "" {
				t.Errorf("succeeded (-want +got):\n%s", diff)
			}
			kvs, err := s.Get(ctx, p+"a", p+"b", p+"c", p+"d")
			if err != nil {
				t.Fatal(err)
			}
			var vals []string
			for _, kv := range kvs {
				vals = append(vals, string(kv.Value))
				if kv.Revision != 0 && kv.Revision != revs[0] {
					t.Errorf("%s at revision %d, want the batch's %d", kv.Key, kv.Revision, revs[0])
				}
			}
			if diff := cmp.Diff([]string{"A", "", "C", "D"}, vals); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			if len(revs) != 2 || revs[0] != revs[1] {
				t.Errorf("revisions %v, want two equal", revs)
			}
			if batches, calls := s.BatchStats(); batches != 1 || calls != 3 {
				t.Errorf("batch stats %d batches, %d calls, want 1, 3", batches, calls)
			}
		})
	}
}

// TestConcurrentTxnsOneWinnerPerKey runs many concurrent creations of
// few keys through Store.Txn: exactly one creation of each key wins,
// whatever batches they end up in.
func TestConcurrentTxnsOneWinnerPerKey(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	s := New(cli)
	ctx := context.Background()
	const keys, tries = 8, 16
	var mu sync.Mutex
	wins := map[string][]string{}
	var wg sync.WaitGroup
	for i := range keys * tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := fmt.Sprintf("/race/%d", i%keys)
			v := fmt.Sprintf("w%d", i)
			_, err := s.Txn(ctx, []mapsrv.Cond{{Key: k}}, []mapsrv.Op{{Key: k, Value: []byte(v)}})
			switch {
			case err == nil:
				mu.Lock()
				wins[k] = append(wins[k], v)
				mu.Unlock()
			case !errors.Is(err, mapsrv.ErrConflict):
				t.Errorf("txn %s: %v", k, err)
			}
		}()
	}
	wg.Wait()
	for i := range keys {
		k := fmt.Sprintf("/race/%d", i)
		kvs, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if w := wins[k]; len(w) != 1 || string(kvs[0].Value) != w[0] {
			t.Errorf("%s: winners %v, stored %q; want exactly one, stored", k, w, kvs[0].Value)
		}
	}
}

// TestBatchRefusedCallFailsAlone: a batch that etcd refuses as a whole
// because of one call (a key written twice) is sent again call by call:
// only that call fails.
func TestBatchRefusedCallFailsAlone(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	s := New(cli)
	ctx := context.Background()
	mk := func(keys ...string) *txnCall {
		c := &txnCall{ctx: ctx, done: make(chan txnResult, 1)}
		for _, k := range keys {
			c.ops = append(c.ops, clientv3.OpPut(k, "v"))
		}
		return c
	}
	batch := []*txnCall{mk("/dup/a"), mk("/dup/b", "/dup/b"), mk("/dup/c")}
	s.batch.commit(batch)
	var got []string
	for _, c := range batch {
		r := <-c.done
		switch {
		case r.err != nil:
			got = append(got, "error")
		case r.ok:
			got = append(got, "ok")
		default:
			got = append(got, "conflict")
		}
	}
	if diff := cmp.Diff([]string{"ok", "error", "ok"}, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}
