package locator_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// TestListAndResyncBatch checks that the initial list reaches the datapath
// in one batch, and that a re-list (after an etcd compaction or a
// reconnect) rewrites only what changed: no entry still in the store is
// deleted and written again, so forwarding never stops.
func TestListAndResyncBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 3000
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		var want []ila.Mapping
		for i := range n {
			id := ila.Identifier(0x1000 + i)
			src.SetTask(task(id, "nve-b", locB))
			want = append(want, mapping(id, locB))
		}
		a := newAgent(t, "", dp, src)
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if diff := cmp.Diff(table(want...), dp.Table()); diff != "" {
			t.Fatalf("after the list (-want +got):\n%s", diff)
		}
		if b, ops := dp.Batches(), dp.Ops(); b != 1 || ops != n {
			t.Errorf("list: %d batches, %d ops; want 1 batch of %d", b, ops, n)
		}

		// While disconnected, 10 tasks move and 5 vanish.
		src.Disconnect()
		for i := range 10 {
			id := ila.Identifier(0x1000 + i)
			src.SetTaskQuietly(task(id, "nve-c", locC))
			want[i] = mapping(id, locC)
		}
		for i := 10; i < 15; i++ {
			src.DeleteTaskQuietly(task(ila.Identifier(0x1000+i), "nve-b", locB))
		}
		want = append(want[:10], want[15:]...)
		ops := dp.Ops()
		time.Sleep(10 * time.Second) // past the retry backoff
		synctest.Wait()
		if diff := cmp.Diff(table(want...), dp.Table()); diff != "" {
			t.Errorf("after the re-list (-want +got):\n%s", diff)
		}
		if got := dp.Ops() - ops; got != 15 {
			t.Errorf("re-list: %d datapath writes, want 15 (10 moves, 5 deletes)", got)
		}
		if b := dp.Batches(); b != 2 {
			t.Errorf("%d batches, want 2", b)
		}
	})
}

// readCounting counts the reads of the whole mapping table.
type readCounting struct {
	*locatortest.Datapath
	reads atomic.Int64
}

func (r *readCounting) Mappings(fn func(ila.Mapping) bool) error {
	r.reads.Add(1)
	return r.Datapath.Mappings(fn)
}

// TestRestartAdoptsTable: an agent restarted over a datapath that kept
// its table (maps pinned in bpffs) reads the table once, at Run, and
// writes nothing when it matches the store: forwarding is never
// interrupted and at a million mappings a restart costs one read of the
// table, not two.
func TestRestartAdoptsTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 3000
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		var want []ila.Mapping
		for i := range n {
			id := ila.Identifier(0x1000 + i)
			src.SetTask(task(id, "nve-b", locB))
			want = append(want, mapping(id, locB))
		}
		stop := run(t, newAgent(t, "", dp, src))
		synctest.Wait()
		stop()

		ops := dp.Ops()
		rc := &readCounting{Datapath: dp}
		a := newAgent(t, "", rc, src)
		stop = run(t, a)
		defer stop()
		synctest.Wait()
		if s := a.Stats(); !s.Synced || s.Mappings != n {
			t.Fatalf("restarted agent: synced %v, %d mappings; want %d", s.Synced, s.Mappings, n)
		}
		if diff := cmp.Diff(table(want...), dp.Table()); diff != "" {
			t.Errorf("after the restart (-want +got):\n%s", diff)
		}
		if got := dp.Ops() - ops; got != 0 {
			t.Errorf("restart: %d datapath writes, want 0", got)
		}
		if got := rc.reads.Load(); got != 1 {
			t.Errorf("restart: the table was read %d times, want once (at Run)", got)
		}

		// A later relist reads the table again (it may have drifted).
		src.Disconnect()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := rc.reads.Load(); got != 2 {
			t.Errorf("after a relist the table was read %d times in all, want 2", got)
		}
	})
}
