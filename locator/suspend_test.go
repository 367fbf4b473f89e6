package locator_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// TestSuspendedLocalTask: a cold move of a task attached here suspends its
// local delivery (the datapath answers unreachable), a rollback restores
// it, and the completion at the destination turns it into an in-flight
// redirect.
func TestSuspendedLocalTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		const id = ila.Identifier(0x1001)
		here := task(id, "nve-a", locA)
		here.Name = "web"
		src.SetTask(here)
		a := newAgent(t, "", dp, src)
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if err := a.Attach(t.Context(), spec("web", "veth-web", id)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		k := locatortest.Key{SIR: sirP, ID: id}
		local := func() locator.Local { return dp.LocalEntries()[k] }
		if local().Suspended {
			t.Fatal("local entry suspended before any move")
		}

		// Cold move toward nve-b: the store keeps the task here, suspended.
		susp := here
		susp.State, susp.Version = ila.StateSuspended, 2
		src.SetTask(susp)
		synctest.Wait()
		if l := local(); !l.Suspended || l.Identifier != id {
			t.Errorf("local entry during the cold move: %+v, want suspended", l)
		}
		if diff := cmp.Diff(table(), dp.Table()); diff != "" {
			t.Errorf("table during the cold move (-want +got):\n%s", diff)
		}
		if got := a.Stats().Suspended; got != 1 {
			t.Errorf("Stats().Suspended = %d, want 1", got)
		}

		// Rolled back (the suspension timed out): delivery resumes.
		back := here
		back.Version = 3
		src.SetTask(back)
		synctest.Wait()
		if l := local(); l.Suspended || l.Identifier != id {
			t.Errorf("local entry after the rollback: %+v, want delivering", l)
		}
		if diff := cmp.Diff(table(mapping(id, locA)), dp.Table()); diff != "" {
			t.Errorf("table after the rollback (-want +got):\n%s", diff)
		}

		// Suspended again, then the task registers at nve-b: redirect.
		susp.Version = 4
		src.SetTask(susp)
		synctest.Wait()
		done := task(id, "nve-b", locB)
		done.Name, done.Version = "web", 5
		done.Previous = []ila.Previous{{Locator: locA, NVE: "nve-a", Until: time.Now().Add(3 * time.Second)}}
		src.SetTask(done)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; ok {
			t.Error("local entry kept after the task registered at its destination")
		}
		if got := dp.InFlightEntries()[k].Mapping; got != mapping(id, locB) {
			t.Errorf("in-flight %+v, want to locator B", got)
		}
	})
}
