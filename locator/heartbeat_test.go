package locator_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// fakeMapsrv plays mapsrv's liveness: epoch, death, fencing.
type fakeMapsrv struct {
	mu     sync.Mutex
	epoch  uint32
	dead   bool
	down   bool     // heartbeats are lost
	epochs []uint32 // epochs heartbeats came with
	holds  []time.Duration
}

func (m *fakeMapsrv) Heartbeat(ctx context.Context, epoch uint32, hold time.Duration) (uint32, error) {
	m.mu.Lock()
	if m.down {
		m.mu.Unlock()
		<-ctx.Done()
		return 0, ctx.Err()
	}
	defer m.mu.Unlock()
	m.epochs = append(m.epochs, epoch)
	m.holds = append(m.holds, hold)
	if epoch != 0 && epoch < m.epoch {
		return 0, &locator.FencedError{Epoch: m.epoch}
	}
	m.dead = false
	return m.epoch, nil
}

func (m *fakeMapsrv) set(f func(m *fakeMapsrv)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

// TestFencedRejoin: the NVE is cut off, declared dead; one task failed
// over to nve-b meanwhile (the store says so, the watch has not told), the
// other was suspended. Back, the agent is fenced: it drops the task that
// moved without registering it again and re-registers the other under the
// new epoch.
func TestFencedRejoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: time.Minute}
		ms := &fakeMapsrv{epoch: 1}
		a := newAgent(t, "", dp, src, func(c *locator.Config) {
			c.Registrar, c.Heartbeater, c.Lookup = reg, ms, src
			c.Heartbeat = ila.Duration(100 * time.Millisecond)
		})
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		for i, id := range []ila.Identifier{0x1001, 0x1002} {
			s := spec([]string{"web1", "web2"}[i], []string{"veth-1", "veth-2"}[i], id)
			if err := a.Attach(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			tk := task(id, "nve-a", locA)
			tk.Name = s.Name
			src.SetTask(tk)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := a.HeartbeatStats(); st.Epoch != 1 || st.Sent < 9 {
			t.Fatalf("heartbeats after 1s: %+v", st)
		}
		// Cut off; mapsrv declares it dead (epoch 2): web1 to its standby
		// on nve-b, web2 suspended.
		ms.set(func(m *fakeMapsrv) { m.down, m.dead, m.epoch = true, true, 2 })
		moved := task(0x1001, "nve-b", locB)
		moved.Name, moved.Version = "web1", 2
		// mapsrv keeps the dead NVE's locator in flight (failover.go).
		moved.Previous = []ila.Previous{{Locator: locA, NVE: "nve-a", Until: time.Now().Add(5 * time.Second)}}
		src.SetTaskQuietly(moved)
		susp := task(0x1002, "nve-a", locA)
		susp.Name, susp.State, susp.Version = "web2", ila.StateSuspended, 2
		src.SetTaskQuietly(susp)
		time.Sleep(time.Second)
		synctest.Wait()
		nregs := len(reg.Registrations())
		// Back.
		ms.set(func(m *fakeMapsrv) { m.down = false })
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		st := a.HeartbeatStats()
		if st.Epoch != 2 || st.Fenced != 1 || st.Rejoined != 1 {
			t.Errorf("after rejoining: %+v, want epoch 2, fenced and rejoined once", st)
		}
		names := map[string]bool{}
		for _, ts := range a.Tasks() {
			if ts.State != locator.StateMoved { // kept for a while as "moved"
				names[ts.Name] = true
			}
		}
		if names["web1"] || !names["web2"] {
			t.Errorf("local tasks after rejoining: %v, want web2 only (web1 failed over)", names)
		}
		k1 := locatortest.Key{SIR: sirP, ID: 0x1001}
		if _, ok := dp.LocalEntries()[k1]; ok {
			t.Error("web1 still delivered locally")
		}
		if f, ok := dp.InFlightEntries()[k1]; !ok || f.Mapping.Locator != locB {
			t.Errorf("web1 in-flight entry %+v, want a redirect to nve-b", f)
		}
		after := reg.Registrations()[nregs:]
		if len(after) == 0 {
			t.Error("web2 not registered again after rejoining")
		}
		for _, r := range after {
			if r.Name == "web1" && r.Lifetime > 0 {
				t.Errorf("web1 registered again after failing over: %+v", r)
			}
			if r.Name == "web2" && r.Epoch != 2 {
				t.Errorf("web2 registered under epoch %d, want 2", r.Epoch)
			}
		}
	})
}

// TestStandbyPromoted: a standby task becomes the task when the store
// maps it to this NVE (its primary died), and is then kept registered.
func TestStandbyPromoted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: time.Minute}
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg })
		stop := run(t, a)
		defer stop()
		const id = ila.Identifier(0x1001)
		primary := task(id, "nve-b", locB)
		primary.Name = "web"
		src.SetTask(primary)
		synctest.Wait()
		s := spec("web", "veth-web", id)
		s.Standby = true
		if err := a.Attach(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		rs := reg.Registrations()
		if len(rs) != 1 || !rs[0].Standby || rs[0].Lifetime == 0 {
			t.Fatalf("standby attach sent %+v, want one standby registration", rs)
		}
		failed := task(id, "nve-a", locA)
		failed.Name, failed.Version = "web", 2
		src.SetTask(failed)
		synctest.Wait()
		if ts := a.Tasks(); len(ts) != 1 || ts[0].Standby || !ts[0].Registered {
			t.Errorf("tasks after the failover: %+v, want web promoted and registered", ts)
		}
		rs = reg.Registrations()
		if last := rs[len(rs)-1]; last.Standby || last.Lifetime == 0 {
			t.Errorf("after promotion sent %+v, want a registration as the task", last)
		}
		if st := a.HeartbeatStats(); st.Promoted != 1 {
			t.Errorf("promoted = %d", st.Promoted)
		}
		// Detaching withdraws the registration as the task (not as a standby).
		if err := a.Detach(t.Context(), "web"); err != nil {
			t.Fatal(err)
		}
		rs = reg.Registrations()
		if last := rs[len(rs)-1]; last.Standby || last.Lifetime != 0 {
			t.Errorf("detach sent %+v", last)
		}
	})
}

// TestRestartHold: a stopping agent asks mapsrv to hold it alive.
func TestRestartHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		ms := &fakeMapsrv{epoch: 1}
		a := newAgent(t, "", dp, src, func(c *locator.Config) {
			c.Heartbeater = ms
			c.Heartbeat = ila.Duration(100 * time.Millisecond)
		})
		stop := run(t, a)
		time.Sleep(time.Second)
		synctest.Wait()
		stop()
		ms.mu.Lock()
		defer ms.mu.Unlock()
		if n := len(ms.holds); n < 2 || ms.holds[n-1] != 8*time.Second || ms.holds[n-2] != 0 {
			t.Errorf("holds sent %v, want zeros then 8s at the end", ms.holds)
		}
	})
}

// TestReregisterWhenPathReturns (issue 18, weakness 2): while the path to
// mapsrv is down the registration retries back off (to 5 s); when
// heartbeats are answered again, the agent registers its tasks at once
// instead of at the end of its backoff.
func TestReregisterWhenPathReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: 4 * time.Second} // renewed every 2 s
		ms := &fakeMapsrv{epoch: 1}
		a := newAgent(t, "", dp, src, func(c *locator.Config) {
			c.Registrar, c.Heartbeater, c.Lookup = reg, ms, src
			c.Heartbeat = ila.Duration(100 * time.Millisecond)
		})
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		s := spec("web1", "veth-1", 0x1001)
		if err := a.Attach(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		// The path goes: heartbeats and registrations fail for 20 s,
		// long enough for the retries to back off to their longest.
		ms.set(func(m *fakeMapsrv) { m.down = true })
		reg.SetErr(errors.New("no registration reply"))
		time.Sleep(20 * time.Second)
		synctest.Wait()
		n := len(reg.Registrations())
		// Back.
		ms.set(func(m *fakeMapsrv) { m.down = false })
		reg.SetErr(nil)
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		if got := len(reg.Registrations()); got == n {
			t.Fatalf("no registration within 300ms of the path's return (%d before)", n)
		}
		for _, ts := range a.Tasks() {
			if ts.Name == "web1" && (!ts.Registered || ts.Error != "") {
				t.Errorf("web1 after the path returned: registered %v, error %q", ts.Registered, ts.Error)
			}
		}
	})
}
