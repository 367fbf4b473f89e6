package locator_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// unjustifiedMove is t as a mapping service that does not check claims
// (issue 17 finding 3) writes it: no reason for the move.
func unjustifiedMove(t ila.Task) ila.Task {
	t.MovedBy = ""
	return t
}

// TestReassertUnjustifiedMove is the victim's side of issue 17 finding 3:
// another NVE's claim moved a task whose port is still attached here,
// and the agent dropped it for good. Now a record elsewhere without a
// justified move makes it claim the task back (the port stays); when the
// mapping service refuses that claim, the move stands and the task moves
// away as usual.
// attachedWeb runs an agent with task web (id 0x1001) attached and
// registered. Its registrar plays an old mapsrv: every registration it
// accepts (standby registrations aside) puts the task at the claimant,
// unless refuse is set.
func attachedWeb(t *testing.T, refuse *atomic.Bool) (*locator.Agent, *locatortest.Datapath, *locatortest.Source, *locatortest.Registrar) {
	dp := locatortest.NewDatapath()
	src := locatortest.NewSource()
	src.SetDomain(dom)
	reg := &locatortest.Registrar{Grant: 20 * time.Second}
	reg.OnRegister = func(r locator.Registration) {
		if r.Lifetime > 0 && !r.Standby && !refuse.Load() {
			tk := task(ila.IdentifierOf(r.SIR), r.NVE, r.Locator)
			tk.Name = r.Name
			go src.SetTask(tk)
		}
	}
	a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg; c.InFlight = ila.Duration(5 * time.Second) })
	t.Cleanup(run(t, a))
	synctest.Wait()
	if err := a.Attach(t.Context(), spec("web", "veth-web", 0x1001)); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	return a, dp, src, reg
}

func TestReassertUnjustifiedMove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refuse atomic.Bool
		a, dp, src, reg := attachedWeb(t, &refuse)
		const id = ila.Identifier(0x1001)
		k := locatortest.Key{SIR: sirP, ID: id}
		stolen := unjustifiedMove(task(id, "nve-b", locB))
		stolen.Name, stolen.Version = "web", 2
		stolen.Previous = []ila.Previous{{Locator: locA, NVE: "nve-a", Until: time.Now().Add(3 * time.Second)}}

		// nve-b's claim was accepted without a reason: claimed back.
		n := len(reg.Registrations())
		src.SetTask(stolen)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; !ok {
			t.Fatal("local entry dropped after an unjustified move")
		}
		rs := reg.Registrations()[n:]
		if len(rs) != 1 || rs[0].Mode != ila.MoveHot || rs[0].Standby || rs[0].NVE != "nve-a" {
			t.Fatalf("registrations after the unjustified move: %+v, want one claim back", rs)
		}
		if diff := cmp.Diff(table(mapping(id, locA)), dp.Table()); diff != "" {
			t.Errorf("table after the claim back (-want +got):\n%s", diff)
		}
		if st := a.Stats(); st.Reasserts != 1 || st.MovesAway != 0 {
			t.Errorf("stats: %d reasserts, %d moves away; want 1, 0", st.Reasserts, st.MovesAway)
		}
		if ts := a.Tasks(); len(ts) != 1 || ts[0].State != locator.StateActive {
			t.Errorf("tasks: %+v, want web active", ts)
		}

		// Again, and this time the mapping service refuses the claim back
		// (it stands by the move): the task moves away.
		refuse.Store(true)
		reg.SetErr(&locator.RejectedError{Reason: "claim not justified"})
		n = len(reg.Registrations())
		stolen.Version = 4
		src.SetTask(stolen)
		synctest.Wait()
		if rs := reg.Registrations()[n:]; len(rs) != 1 || rs[0].Mode != ila.MoveHot {
			t.Fatalf("registrations: %+v, want one claim back", rs)
		}
		if _, ok := dp.LocalEntries()[k]; ok {
			t.Error("local entry kept after the claim back was refused")
		}
		if diff := cmp.Diff(table(mapping(id, locB)), dp.Table()); diff != "" {
			t.Errorf("table after the refused claim back (-want +got):\n%s", diff)
		}
		if ts := a.Tasks(); len(ts) != 1 || ts[0].State != locator.StateMoved {
			t.Errorf("tasks: %+v, want web moved", ts)
		}
	})
}

// TestJustifiedMoveNotReasserted: a move with a reason (here a claim from
// the task's standby) is followed at once, with no claim back.
func TestJustifiedMoveNotReasserted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refuse atomic.Bool
		a, dp, src, reg := attachedWeb(t, &refuse)
		const id = ila.Identifier(0x1001)
		n := len(reg.Registrations())
		moved := task(id, "nve-b", locB)
		moved.Name, moved.Version, moved.MovedBy = "web", 2, "standby"
		src.SetTask(moved)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[locatortest.Key{SIR: sirP, ID: id}]; ok {
			t.Error("local entry kept after a justified move")
		}
		if rs := reg.Registrations()[n:]; len(rs) != 0 {
			t.Errorf("registrations after a justified move: %+v, want none", rs)
		}
		if st := a.Stats(); st.Reasserts != 0 || st.MovesAway != 1 {
			t.Errorf("stats: %d reasserts, %d moves away; want 0, 1", st.Reasserts, st.MovesAway)
		}
	})
}
