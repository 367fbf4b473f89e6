package locator_test

import (
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
