package locator_test

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ilamesh/ilamesh/locator"
)

// TestClaim: a task's unsolicited NA or gratuitous ARP (Agent.Claim) on
// its own port re-registers an active task at once, commits a prepared
// one (the migration's switchover), is taken for a plain standby's port
// without claiming the mapping (that waits for its commit), and is refused
// for an address or a port that does not match.
func TestClaim(t *testing.T) {
	t.Run("active task re-registers at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, _, reg, _ := prepareAgent(t)
			web := spec("web", "veth-web", 0x1001)
			if err := a.Attach(t.Context(), web); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			n := len(reg.Registrations())
			ifx := state(t, a, "web").Ifindex
			if !a.Claim(ifx, web.SIR) {
				t.Fatal("claim of the task's own address on its port refused")
			}
			synctest.Wait()
			if got := len(reg.Registrations()); got != n+1 {
				t.Errorf("registrations %d after the claim, want %d (one more, without waiting for the refresh)", got, n+1)
			}
		})
	})
	t.Run("prepared task commits", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, _, reg, _ := prepareAgent(t)
			web := spec("web", "veth-web", 0x1001)
			if err := a.Prepare(t.Context(), web); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			s := state(t, a, "web")
			if s.State != locator.StatePrepared {
				t.Fatalf("after prepare: %+v", s)
			}
			if !a.Claim(s.Ifindex, web.SIR) {
				t.Fatal("claim of a prepared task refused")
			}
			synctest.Wait()
			if rs := reg.Registrations(); !isCommit(rs) {
				t.Errorf("registrations after the claim: %+v, want a standby registration, then a hot claim", rs)
			}
			if s := state(t, a, "web"); s.State != locator.StateActive || s.CommittedBy != locator.CommitByClaim {
				t.Errorf("after the claim: %+v, want active, committed by claim", s)
			}
		})
	})
	t.Run("plain standby waits for its commit", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, _, reg, _ := prepareAgent(t)
			web := spec("web", "veth-web", 0x1001)
			web.Standby = true
			if err := a.Attach(t.Context(), web); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			if !a.Claim(state(t, a, "web").Ifindex, web.SIR) {
				t.Error("claim of a standby task on its own port refused (its port may deliver)")
			}
			synctest.Wait()
			for _, r := range reg.Registrations() {
				if !r.Standby { // a plain standby registers as standby only
					t.Errorf("standby task claimed the mapping after a claim frame: %+v", r)
				}
			}
			if s := state(t, a, "web"); !s.Standby {
				t.Errorf("standby task committed by a claim frame: %+v", s)
			}
		})
	})
	t.Run("other address or port ignored", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, _, reg, _ := prepareAgent(t)
			web := spec("web", "veth-web", 0x1001)
			if err := a.Prepare(t.Context(), web); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			ifx := state(t, a, "web").Ifindex
			if a.Claim(ifx, netip.MustParseAddr("3333:0:0:1::dead")) {
				t.Error("claim of another address taken")
			}
			if a.Claim(ifx+7, web.SIR) {
				t.Error("claim on another port taken")
			}
			synctest.Wait()
			if n := len(reg.Registrations()); n != 0 {
				t.Errorf("%d registrations after claims that do not match", n)
			}
			if s := state(t, a, "web"); s.State != locator.StatePrepared {
				t.Errorf("after claims that do not match: %+v, want still prepared", s)
			}
		})
	})
}
