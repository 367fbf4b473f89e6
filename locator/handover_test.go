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

// runStates is a Hypervisor and RunStateWatcher whose guest the test
// stops and resumes.
type runStates struct {
	hypervisor
	mu  sync.Mutex
	fns map[string]func(bool, time.Time)
}

func (r *runStates) WatchRunState(ctx context.Context, sock string, fn func(bool, time.Time)) (<-chan struct{}, error) {
	if sock == "/run/gone.qmp" {
		return nil, errors.New("connect: no such file")
	}
	r.mu.Lock()
	if r.fns == nil {
		r.fns = map[string]func(bool, time.Time){}
	}
	r.fns[sock] = fn
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		r.mu.Lock()
		delete(r.fns, sock)
		r.mu.Unlock()
	}()
	return done, nil
}

// set reports the guest behind sock running or stopped; false if nothing
// watches it.
func (r *runStates) set(sock string, running bool) bool {
	r.mu.Lock()
	fn := r.fns[sock]
	r.mu.Unlock()
	if fn != nil {
		fn(running, time.Now())
	}
	return fn != nil
}

// The source of a live migration: the guest's stop redirects its packets
// to the destination before the move commits; a resume here (a failed
// migration) brings local delivery back; the move's commit keeps the
// redirect.
func TestHandoverRedirectsOnStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hv := &runStates{}
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Hypervisor = hv; c.InFlight = ila.Duration(5 * time.Second) })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		const id = ila.Identifier(0x1001)
		vm := spec("vm", "tap-vm", id)
		if err := a.Attach(t.Context(), vm); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		k := locatortest.Key{SIR: sirP, ID: id}
		toB := mapping(id, locB)
		toB.Tenant = 0

		// Bad requests: an unknown task, no trigger, our own locator.
		if err := a.Handover(t.Context(), "nope", locator.HandoverSpec{Locator: locB, Now: true}); !errors.Is(err, locator.ErrNotFound) {
			t.Errorf("handover of an unknown task: %v, want ErrNotFound", err)
		}
		if err := a.Handover(t.Context(), "vm", locator.HandoverSpec{Locator: locB}); err == nil {
			t.Error("handover without a QMP socket or now: no error")
		}
		if err := a.Handover(t.Context(), "vm", locator.HandoverSpec{Locator: locA, Now: true}); err == nil {
			t.Error("handover to our own locator: no error")
		}
		if _, ok := dp.LocalEntries()[k]; !ok || len(dp.InFlightEntries()) != 0 {
			t.Fatal("a refused handover changed the datapath")
		}

		// QMP socket gone: an error, nothing armed.
		if err := a.Handover(t.Context(), "vm", locator.HandoverSpec{Locator: locB, QMP: "/run/gone.qmp"}); err == nil {
			t.Error("handover with the monitor gone: no error")
		}
		if s := state(t, a, "vm"); s.HandoverTo != 0 {
			t.Errorf("a failed handover is armed: %+v", s)
		}
		if err := a.Handover(t.Context(), "vm", locator.HandoverSpec{Locator: locB, QMP: "/run/vm.qmp"}); err != nil {
			t.Fatal(err)
		}
		// Armed when Handover returns: the guest's stop right after is seen.
		if !hv.set("/run/vm.qmp", false) {
			t.Fatal("nothing watches the guest's run state when Handover returns")
		}
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; ok {
			t.Error("guest stopped: the local entry stays")
		}
		if got := dp.InFlightEntries()[k]; got.Mapping != toB {
			t.Errorf("guest stopped: in-flight %+v, want to B", got)
		}
		if s := state(t, a, "vm"); s.RedirectedAt.IsZero() || s.HandoverTo != locB || s.State != locator.StateActive {
			t.Errorf("status while redirecting: %+v", s)
		}
		// The migration fails: the guest runs here again.
		hv.set("/run/vm.qmp", true)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; !ok || len(dp.InFlightEntries()) != 0 {
			t.Error("guest resumed here: local delivery not back")
		}
		// Second attempt; this time the move commits (the notification).
		hv.set("/run/vm.qmp", false)
		synctest.Wait()
		if _, err := a.Notify(sirP.Addr(id), locB, "nve-b", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := dp.InFlightEntries()[k]; got.Mapping != toB || !got.Until.Equal(time.Now().Add(5*time.Second)) {
			t.Errorf("after the commit: in-flight %+v, want the move's", got)
		}
		if s := state(t, a, "vm"); s.State != locator.StateMoved || s.RedirectedAt.IsZero() {
			t.Errorf("after the commit: %+v, want moved with its early redirect's time", s)
		}
		if hv.set("/run/vm.qmp", true) {
			t.Error("the run state is still watched after the move")
		}
	})
}

// A handover with now (the orchestrator saw the guest stop) redirects at
// once; armed again, the first redirect ends; with nothing else happening,
// local delivery comes back after the hold time.
func TestHandoverNowExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hv := &runStates{}
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Hypervisor = hv })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		const id = ila.Identifier(0x1002)
		if err := a.Attach(t.Context(), spec("vm", "tap-vm", id)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		k := locatortest.Key{SIR: sirP, ID: id}
		if err := a.Handover(t.Context(), "vm", locator.HandoverSpec{Locator: locB, Now: true}); err != nil {
			t.Fatal(err)
		}
		if _, ok := dp.LocalEntries()[k]; ok || dp.InFlightEntries()[k].Mapping.Locator != locB {
			t.Fatal("handover now: not redirected")
		}
		// Armed again (another destination, on the guest's stop): the
		// first redirect ends, the new one waits for the stop.
		if err := a.Handover(t.Context(), "vm", locator.HandoverSpec{Locator: locC, QMP: "/run/vm.qmp"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; !ok || len(dp.InFlightEntries()) != 0 {
			t.Fatal("handover armed again: the first redirect stays")
		}
		hv.set("/run/vm.qmp", false)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; ok || dp.InFlightEntries()[k].Mapping.Locator != locC {
			t.Fatal("guest stopped: not redirected to the new destination")
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; !ok || len(dp.InFlightEntries()) != 0 {
			t.Error("the move never committed: local delivery not back after the hold")
		}
		// A prepared task has nothing to hand over.
		if err := a.Prepare(t.Context(), spec("in", "tap-in", 0x1003)); err != nil {
			t.Fatal(err)
		}
		if err := a.Handover(t.Context(), "in", locator.HandoverSpec{Locator: locB, Now: true}); !errors.Is(err, locator.ErrNotActive) {
			t.Errorf("handover of a prepared task: %v, want ErrNotActive", err)
		}
	})
}
