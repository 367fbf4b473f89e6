package locator_test

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

func newRouter(t *testing.T, dp locator.Datapath, src locator.MappingSource) *locator.Agent {
	t.Helper()
	a, err := locator.New(locator.Config{Node: "router", Router: true, Datapath: dp, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestRouterHoldsTheWholeTable: an ILA router's agent has no locator; it
// adopts what a previous run left pinned, installs every active mapping of
// the store (none for suspended tasks), follows moves and deletions, and
// converges to exactly the store after a broken watch.
func TestRouterHoldsTheWholeTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		stale, kept := mapping(0x1009, locC), mapping(0x1001, locB)
		dp.UpsertMapping(stale)
		dp.UpsertMapping(kept)
		src := locatortest.NewSource()
		src.SetDomain(dom)
		src.SetTask(task(0x1001, "nve-b", locB))
		src.SetTask(task(0x1002, "nve-c", locC))
		suspended := task(0x1003, "nve-a", locA)
		suspended.State = ila.StateSuspended
		src.SetTask(suspended)
		a := newRouter(t, dp, src)
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if diff := cmp.Diff(table(kept, mapping(0x1002, locC)), dp.Table()); diff != "" {
			t.Fatalf("after the first sync (-want +got):\n%s", diff)
		}

		// A hot move, the end of a cold move, a deregistration.
		src.SetTask(task(0x1001, "nve-c", locC))
		resumed := suspended
		resumed.State, resumed.Locator, resumed.NVE = ila.StateActive, locB, "nve-b"
		src.SetTask(resumed)
		src.DeleteTask(task(0x1002, "nve-c", locC))
		synctest.Wait()
		if diff := cmp.Diff(table(mapping(0x1001, locC), mapping(0x1003, locB)), dp.Table()); diff != "" {
			t.Fatalf("after move, resume and delete (-want +got):\n%s", diff)
		}

		// A delete lost while the watch was down: the relist removes it.
		src.Disconnect()
		src.DeleteTaskQuietly(task(0x1001, "nve-c", locC))
		src.SetTask(task(0x1004, "nve-a", locA))
		time.Sleep(10 * time.Second) // past the retry backoff
		synctest.Wait()
		if diff := cmp.Diff(table(mapping(0x1003, locB), mapping(0x1004, locA)), dp.Table()); diff != "" {
			t.Errorf("after the relist (-want +got):\n%s", diff)
		}
		st := a.Stats()
		if st.Syncs != 2 || st.WatchErrors != 1 || st.Mappings != 2 || !st.Synced || st.Revision == 0 || st.Locals != 0 {
			t.Errorf("stats %+v: want 2 syncs, 1 watch error, 2 mappings, synced, a revision, no local task", st)
		}

		// A router attaches nothing.
		if err := a.Attach(t.Context(), spec("x", "vx", 0x1005)); !errors.Is(err, locator.ErrRouter) {
			t.Errorf("Attach on a router: %v, want ErrRouter", err)
		}
		if len(dp.LocalEntries()) != 0 || len(dp.Ports()) != 0 {
			t.Errorf("router datapath has local entries %v or ports %v", dp.LocalEntries(), dp.Ports())
		}
	})
}

func TestRouterConfig(t *testing.T) {
	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	tests := []struct {
		name    string
		mut     func(*locator.Config)
		wantErr string
	}{
		{"no locator is fine", func(c *locator.Config) {}, ""},
		{"push mode is fine", func(c *locator.Config) { c.Mode = locator.ModePush }, ""},
		{"no node", func(c *locator.Config) { c.Node = "" }, "node name: empty"},
		{"a locator", func(c *locator.Config) { c.Locators = []locator.LocatorSpec{{Locator: locA}} }, "no locator of its own"},
		{"tasks", func(c *locator.Config) { c.Tasks = []locator.TaskSpec{spec("x", "vx", 1)} }, "attaches no tasks"},
		{"state file", func(c *locator.Config) { c.StateFile = "/run/x.json" }, "no state file"},
		{"pull mode", func(c *locator.Config) { c.Mode = locator.ModePull }, "whole table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := locator.Config{Node: "router", Router: true, Datapath: dp, Source: src}
			tc.mut(&c)
			_, err := locator.New(c)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
