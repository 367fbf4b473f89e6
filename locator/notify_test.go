package locator_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// TestNotifyHonoursInFlight: the in-flight time is the mapping service's:
// the notification's lifetime (0: no redirect at all), corrected to the
// store's deadline when the watch shows it; the agent's own InFlight
// setting plays no part. A notification for a task this NVE does not hold
// is refused with ErrNotFound.
func TestNotifyHonoursInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.InFlight = ila.Duration(time.Hour) })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		const hot, cold, stranger = ila.Identifier(0x1001), ila.Identifier(0x1002), ila.Identifier(0x1003)
		for i, id := range []ila.Identifier{hot, cold} {
			if err := a.Attach(t.Context(), spec([]string{"hot", "cold"}[i], []string{"veth-h", "veth-c"}[i], id)); err != nil {
				t.Fatal(err)
			}
		}
		kh, kc := locatortest.Key{SIR: sirP, ID: hot}, locatortest.Key{SIR: sirP, ID: cold}

		if local, err := a.Notify(sirP.Addr(hot), locB, "nve-b", 8*time.Second); err != nil || !local {
			t.Fatalf("Notify(hot) = %v, %v", local, err)
		}
		if got := dp.InFlightEntries()[kh]; got.Mapping != mapping(hot, locB) || !got.Until.Equal(time.Now().Add(8*time.Second)) {
			t.Errorf("hot in-flight %+v, want to B for the notified 8s", got)
		}
		// The watch brings the store's deadline (10 s): it wins.
		moved := task(hot, "nve-b", locB)
		moved.Previous = []ila.Previous{{Locator: locA, NVE: "nve-a", Until: time.Now().Add(10 * time.Second)}}
		src.SetTask(moved)
		synctest.Wait()
		if got := dp.InFlightEntries()[kh]; !got.Until.Equal(moved.Previous[0].Until) {
			t.Errorf("hot in-flight until %v, want the store's %v", got.Until, moved.Previous[0].Until)
		}

		// Lifetime 0 (a cold move): no redirect; the local entry goes.
		if local, err := a.Notify(sirP.Addr(cold), locB, "nve-b", 0); err != nil || !local {
			t.Fatalf("Notify(cold) = %v, %v", local, err)
		}
		if _, ok := dp.InFlightEntries()[kc]; ok {
			t.Error("in-flight entry installed for a notification with lifetime 0")
		}
		if _, ok := dp.LocalEntries()[kc]; ok {
			t.Error("local entry kept after the cold move's notification")
		}
		// A repeat of it (mapsrv retries) is still known.
		if _, err := a.Notify(sirP.Addr(cold), locB, "nve-b", 0); err != nil {
			t.Errorf("repeated notification: %v", err)
		}
		if _, err := a.Notify(sirP.Addr(stranger), locB, "nve-b", 8*time.Second); !errors.Is(err, locator.ErrNotFound) {
			t.Errorf("notification for a task never here: %v, want ErrNotFound", err)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(dp.InFlightEntries()); n != 0 {
			t.Errorf("%d in-flight entries after the store's deadline", n)
		}
	})
}

// TestColdCompletionNoInFlight: the watch shows a task of this NVE
// registered elsewhere with no previous entry for this NVE (a cold move's
// completion): no redirect, whatever the agent's InFlight setting.
func TestColdCompletionNoInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		const id = ila.Identifier(0x1001)
		here := task(id, "nve-a", locA)
		here.Name = "web"
		src.SetTask(here)
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.InFlight = ila.Duration(time.Hour) })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if err := a.Attach(t.Context(), spec("web", "veth-web", id)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		done := task(id, "nve-b", locB)
		done.Name, done.Version = "web", 3
		src.SetTask(done)
		synctest.Wait()
		k := locatortest.Key{SIR: sirP, ID: id}
		if _, ok := dp.LocalEntries()[k]; ok {
			t.Error("local entry kept after the task registered elsewhere")
		}
		if f, ok := dp.InFlightEntries()[k]; ok {
			t.Errorf("in-flight entry %+v after a cold completion, want none", f)
		}
		if got := dp.Table()[k]; got != mapping(id, locB) {
			t.Errorf("mapping %+v, want to B", got)
		}
	})
}
