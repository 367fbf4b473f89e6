package locator_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// framePorts is a Ports and FrameWatcher whose frames the test sends.
type framePorts struct {
	mu      sync.Mutex
	watches map[string]func(frame []byte, at time.Time) bool
}

func (p *framePorts) Prepare(ifname string) (locator.Port, error) {
	return locator.Port{Name: ifname, Ifindex: 7}, nil
}
func (p *framePorts) Release(string) error { return nil }

func (p *framePorts) WatchFrames(ctx context.Context, port locator.Port, match func([]byte) bool) (<-chan time.Time, error) {
	ch := make(chan time.Time, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watches == nil {
		p.watches = map[string]func([]byte, time.Time) bool{}
	}
	p.watches[port.Name] = func(f []byte, at time.Time) bool {
		if !match(f) {
			return false
		}
		ch <- at
		return true
	}
	return ch, nil
}

// send delivers a frame on the port's watch; it reports whether the watch
// took it as the task's first frame.
func (p *framePorts) send(ifname string, f []byte, at time.Time) bool {
	p.mu.Lock()
	w := p.watches[ifname]
	if w != nil {
		delete(p.watches, ifname)
	}
	p.mu.Unlock()
	if w == nil {
		return false
	}
	if w(f, at) {
		return true
	}
	p.mu.Lock()
	p.watches[ifname] = w
	p.mu.Unlock()
	return false
}

// hypervisor is a Hypervisor whose guest the test resumes.
type hypervisor struct {
	running   chan struct{}
	announced chan string
	err       error
}

func (h *hypervisor) WaitRunning(ctx context.Context, sock string) (time.Time, error) {
	if h.err != nil {
		return time.Time{}, h.err
	}
	select {
	case <-h.running:
		return time.Now(), nil
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

func (h *hypervisor) Announce(ctx context.Context, sock string) error {
	h.announced <- sock
	return nil
}

// eth builds an Ethernet frame from the task's MAC.
func eth(src ila.MAC, etype uint16, payload []byte) []byte {
	f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src[:]...)
	return append(append(f, byte(etype>>8), byte(etype)), payload...)
}

func ipv6(src, dst [16]byte, next byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	h[4], h[5] = byte(len(payload)>>8), byte(len(payload))
	h[6], h[7] = next, 255
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	return append(h, payload...)
}

func na(target [16]byte) []byte {
	b := make([]byte, 24)
	b[0] = 136
	copy(b[8:], target[:])
	return b
}

func arp(sha ila.MAC, spa, tpa [4]byte) []byte {
	b := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	b = append(b, sha[:]...)
	b = append(b, spa[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, tpa[:]...)
}

func TestAnnounceFrames(t *testing.T) {
	web := spec("web", "veth-web", 0x1001)
	sir := web.SIR.As16()
	other := sirP.Addr(0x1002).As16()
	ll := [16]byte{0xfe, 0x80, 15: 9}
	allNodes := [16]byte{0xff, 0x02, 15: 1}
	v4 := web
	v4.IPv4, v4.VNI = netip.AddrFrom4([4]byte{10, 0, 0, 5}), 7
	stranger := ila.MAC{2, 9, 9, 9, 9, 9}
	tests := []struct {
		name  string
		spec  locator.TaskSpec
		frame []byte
		want  bool
	}{
		{"QEMU announce (RARP)", web, eth(web.MAC, 0x8035, make([]byte, 28)), true},
		{"RARP from another MAC", web, eth(stranger, 0x8035, make([]byte, 28)), false},
		{"unsolicited NA for the SIR address", web, eth(web.MAC, 0x86dd, ipv6(ll, allNodes, 58, na(sir))), true},
		{"NA for another address", web, eth(web.MAC, 0x86dd, ipv6(ll, allNodes, 58, na(other))), false},
		{"packet from the SIR address", web, eth(web.MAC, 0x86dd, ipv6(sir, other, 17, make([]byte, 8))), true},
		{"router solicitation from link-local", web, eth(web.MAC, 0x86dd, ipv6(ll, allNodes, 58, []byte{133, 0, 0, 0, 0, 0, 0, 0})), false},
		{"gratuitous ARP", web, eth(web.MAC, 0x0806, arp(web.MAC, [4]byte{10, 0, 0, 5}, [4]byte{10, 0, 0, 5})), true},
		{"ARP request (not gratuitous)", web, eth(web.MAC, 0x0806, arp(web.MAC, [4]byte{10, 0, 0, 5}, [4]byte{10, 0, 0, 1})), false},
		{"ARP from the task's IPv4 address", v4, eth(web.MAC, 0x0806, arp(web.MAC, [4]byte{10, 0, 0, 5}, [4]byte{10, 0, 0, 1})), true},
		{"IPv4 from the task's address", v4, eth(web.MAC, 0x0800, append([]byte{0x45, 11: 0, 10, 0, 0, 5, 10, 0, 0, 1}, make([]byte, 8)...)), true},
		{"IPv4 from another address", v4, eth(web.MAC, 0x0800, append([]byte{0x45, 11: 0, 10, 0, 0, 6, 10, 0, 0, 1}, make([]byte, 8)...)), false},
		{"runt", web, []byte{1, 2, 3}, false},
		{"truncated IPv6", web, eth(web.MAC, 0x86dd, []byte{0x60, 0}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := locator.IsAnnounce(tc.frame, tc.spec); got != tc.want {
				t.Errorf("IsAnnounce = %v, want %v", got, tc.want)
			}
		})
	}
}

// prepareAgent runs an agent with the task's domain and a mapping of web
// at nve-b, as at the destination before a live migration.
func prepareAgent(t *testing.T, mut ...func(*locator.Config)) (*locator.Agent, *locatortest.Datapath, *locatortest.Registrar, *locatortest.Source) {
	t.Helper()
	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	src.SetDomain(dom)
	elsewhere := task(0x1001, "nve-b", locB)
	elsewhere.Name = "web"
	src.SetTask(elsewhere)
	reg := &locatortest.Registrar{Grant: time.Minute}
	a := newAgent(t, "", dp, src, append([]func(*locator.Config){func(c *locator.Config) { c.Registrar = reg }}, mut...)...)
	stop := run(t, a)
	t.Cleanup(stop)
	synctest.Wait()
	return a, dp, reg, src
}

func state(t *testing.T, a *locator.Agent, name string) locator.TaskStatus {
	t.Helper()
	s, ok := a.Task(name)
	if !ok {
		t.Fatalf("task %s not listed", name)
	}
	return s
}

// isCommit reports whether rs is what the commit of a prepared task sends:
// a standby registration (what justifies the claim at mapsrv,
// docs/registration.md section 7.4), then the claim (move mode hot).
func isCommit(rs []locator.Registration) bool {
	return len(rs) == 2 && rs[0].Standby && rs[0].Mode == ila.MoveNone && rs[0].Lifetime > 0 &&
		!rs[1].Standby && rs[1].Mode == ila.MoveHot && rs[1].Lifetime > 0
}

func TestPrepareCommitByAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, dp, reg, _ := prepareAgent(t)
		web := spec("web", "veth-web", 0x1001)
		if err := a.Prepare(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		k := locatortest.Key{SIR: sirP, ID: 0x1001}
		if _, ok := dp.LocalEntries()[k]; !ok {
			t.Error("prepared task has no local entry")
		}
		if n := len(reg.Registrations()); n != 0 {
			t.Errorf("prepared task registered %d times", n)
		}
		if diff := cmp.Diff(table(mapping(0x1001, locB)), dp.Table()); diff != "" {
			t.Errorf("mapping changed by prepare (-want +got):\n%s", diff)
		}
		if s := state(t, a, "web"); s.State != locator.StatePrepared || s.PreparedAt.IsZero() {
			t.Errorf("after prepare: %+v", s)
		}
		if err := a.Prepare(t.Context(), web); err != nil {
			t.Errorf("prepare again: %v", err)
		}
		if err := a.Commit(t.Context(), "web"); err != nil {
			t.Fatal(err)
		}
		if rs := reg.Registrations(); !isCommit(rs) {
			t.Errorf("registrations after commit: %+v, want a standby registration, then a claim", rs)
		}
		if s := state(t, a, "web"); s.State != locator.StateActive || s.CommittedBy != locator.CommitByAPI || !s.Registered {
			t.Errorf("after commit: %+v", s)
		}
		if err := a.Commit(t.Context(), "web"); err != nil {
			t.Errorf("commit again: %v, want a no-op", err)
		}
		if n := len(reg.Registrations()); n != 2 {
			t.Errorf("second commit registered again (%d registrations)", n)
		}
		if err := a.Commit(t.Context(), "nope"); !errors.Is(err, locator.ErrNotFound) {
			t.Errorf("commit of a task never prepared: %v, want ErrNotFound", err)
		}
		if err := a.Abort(t.Context(), "web"); !errors.Is(err, locator.ErrNotPrepared) {
			t.Errorf("abort of an active task: %v, want ErrNotPrepared", err)
		}
	})
}

func TestPrepareAbortLeavesMapping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, dp, reg, _ := prepareAgent(t)
		if err := a.Prepare(t.Context(), spec("web", "veth-web", 0x1001)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := a.Abort(t.Context(), "web"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := len(dp.LocalEntries()); n != 0 {
			t.Errorf("%d local entries after abort", n)
		}
		if ps := dp.Ports(); len(ps) != 0 {
			t.Errorf("ports after abort: %v", ps)
		}
		if rs := reg.Registrations(); len(rs) != 0 {
			t.Errorf("abort registered or deregistered: %+v", rs)
		}
		if diff := cmp.Diff(table(mapping(0x1001, locB)), dp.Table()); diff != "" {
			t.Errorf("mapping after abort (-want +got):\n%s", diff)
		}
		if _, ok := a.Task("web"); ok {
			t.Error("aborted task still listed")
		}
		if err := a.Abort(t.Context(), "web"); !errors.Is(err, locator.ErrNotFound) {
			t.Errorf("abort again: %v, want ErrNotFound", err)
		}
	})
}

func TestPrepareCommitOnFirstFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ports := &framePorts{}
		a, _, reg, _ := prepareAgent(t, func(c *locator.Config) { c.Ports = ports })
		web := spec("web", "veth-web", 0x1001)
		if err := a.Prepare(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ll := [16]byte{0xfe, 0x80, 15: 9}
		rs := eth(web.MAC, 0x86dd, ipv6(ll, [16]byte{0xff, 0x02, 15: 2}, 58, []byte{133, 0, 0, 0, 0, 0, 0, 0}))
		if ports.send("veth-web", rs, time.Now()) {
			t.Fatal("a router solicitation committed the task")
		}
		synctest.Wait()
		if n := len(reg.Registrations()); n != 0 {
			t.Fatalf("registered before the announce: %d", n)
		}
		time.Sleep(time.Second)
		frameAt := time.Now()
		if !ports.send("veth-web", eth(web.MAC, 0x8035, make([]byte, 28)), frameAt) {
			t.Fatal("QEMU's RARP announce did not commit the task")
		}
		synctest.Wait()
		if rs := reg.Registrations(); !isCommit(rs) {
			t.Errorf("registrations after the announce: %+v, want a standby registration, then a claim", rs)
		}
		s := state(t, a, "web")
		if s.State != locator.StateActive || s.CommittedBy != locator.CommitByFrame || !s.FirstFrame.Equal(frameAt) || s.CommittedAt.Before(frameAt) {
			t.Errorf("after the announce: %+v", s)
		}
	})
}

func TestPrepareCommitOnResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hv := &hypervisor{running: make(chan struct{}), announced: make(chan string, 1)}
		a, _, reg, _ := prepareAgent(t, func(c *locator.Config) { c.Hypervisor = hv })
		web := spec("web", "veth-web", 0x1001)
		web.QMP = "/run/vm/web.qmp"
		if err := a.Prepare(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(reg.Registrations()); n != 0 {
			t.Fatalf("registered before the guest resumed: %d", n)
		}
		close(hv.running)
		synctest.Wait()
		if rs := reg.Registrations(); !isCommit(rs) {
			t.Errorf("registrations after the guest resumed: %+v, want a standby registration, then a claim", rs)
		}
		if s := state(t, a, "web"); s.CommittedBy != locator.CommitByQMP {
			t.Errorf("committed by %q, want qmp", s.CommittedBy)
		}
		select {
		case sock := <-hv.announced:
			if sock != web.QMP {
				t.Errorf("announce asked on %q", sock)
			}
		default:
			t.Error("QEMU not asked to announce the guest after a QMP commit")
		}
	})
}

func TestPrepareQMPGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hv := &hypervisor{err: errors.New("dial unix /run/vm/web.qmp: no such file")}
		a, _, reg, _ := prepareAgent(t, func(c *locator.Config) { c.Hypervisor = hv })
		web := spec("web", "veth-web", 0x1001)
		web.QMP = "/run/vm/web.qmp"
		if err := a.Prepare(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(reg.Registrations()); n != 0 {
			t.Errorf("a dead QMP socket committed the task (%d registrations)", n)
		}
		if s := state(t, a, "web"); s.State != locator.StatePrepared {
			t.Errorf("state %q, want prepared (the API or a frame still commits)", s.State)
		}
	})
}

// A release or detach arriving at the source after the task moved away
// succeeds and never deregisters (the mapping is the new NVE's).
func TestLateDetachAfterMove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: time.Minute}
		reg.OnRegister = func(r locator.Registration) {
			if r.Lifetime > 0 {
				tk := task(ila.IdentifierOf(r.SIR), r.NVE, r.Locator)
				tk.Name = r.Name
				go src.SetTask(tk)
			}
		}
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if err := a.Attach(t.Context(), spec("web", "veth-web", 0x1001)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		moved := task(0x1001, "nve-b", locB)
		moved.Name = "web"
		src.SetTask(moved)
		synctest.Wait()
		if s := state(t, a, "web"); s.State != locator.StateMoved || s.MovedAt.IsZero() {
			t.Errorf("after the move: %+v", s)
		}
		n := len(reg.Registrations())
		if err := a.Detach(t.Context(), "web"); err != nil {
			t.Errorf("late detach: %v, want success", err)
		}
		synctest.Wait()
		for _, r := range reg.Registrations()[n:] {
			t.Errorf("late detach sent %+v", r)
		}
		if diff := cmp.Diff(table(mapping(0x1001, locB)), dp.Table()); diff != "" {
			t.Errorf("mapping after late detach (-want +got):\n%s", diff)
		}
		if err := a.Detach(t.Context(), "web"); !errors.Is(err, locator.ErrNotFound) {
			t.Errorf("second late detach: %v, want ErrNotFound", err)
		}
	})
}

func TestPrepareAPI(t *testing.T) {
	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	src.SetDomain(dom)
	a := newAgent(t, "", dp, src, func(c *locator.Config) { c.StateFile = filepath.Join(t.TempDir(), "tasks.json") })
	stop := run(t, a)
	defer stop()
	c, err := locator.NewClient(serveAPI(t, a.Handler()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var apiErr *locator.APIError
	code := func(err error) int {
		if errors.As(err, &apiErr) {
			return apiErr.Status
		}
		return 0
	}
	if _, err := c.Commit(ctx, "web"); code(err) != http.StatusNotFound {
		t.Errorf("commit before prepare: %v, want 404", err)
	}
	if _, err := c.Task(ctx, "web"); code(err) != http.StatusNotFound {
		t.Errorf("task before prepare: %v, want 404", err)
	}
	web := spec("web", "veth-web", 0x1001)
	st, err := c.Prepare(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != locator.StatePrepared || !st.Standby {
		t.Errorf("prepare answer: %+v", st)
	}
	if _, err := c.Prepare(ctx, spec("web2", "veth-web", 0x1002)); code(err) != http.StatusConflict {
		t.Errorf("prepare on a port in use: %v, want 409", err)
	}
	if err := c.Abort(ctx, "nope"); code(err) != http.StatusNotFound || !errors.Is(err, locator.ErrNotFound) {
		t.Errorf("abort unknown: %v, want 404", err)
	}
	if st, err = c.Commit(ctx, "web"); err != nil || st.State != locator.StateActive || st.CommittedBy != locator.CommitByAPI {
		t.Errorf("commit: %+v, %v", st, err)
	}
	if err := c.Abort(ctx, "web"); code(err) != http.StatusPreconditionFailed || !errors.Is(err, locator.ErrNotPrepared) {
		t.Errorf("abort of an active task: %v, want 412 and ErrNotPrepared", err)
	}
	if st, err := c.Task(ctx, "web"); err != nil || st.State != locator.StateActive {
		t.Errorf("task: %+v, %v", st, err)
	}
}

// TestAbortUnclaimedCommit: a standby committed while mapsrv does not
// answer (the claim fails) can be aborted, and then never claims the task
// later, when mapsrv is back (issue 18, weakness 4). Once a claim was
// accepted, abort refuses.
func TestAbortUnclaimedCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, dp, reg, _ := prepareAgent(t)
		reg.SetErr(errors.New("no registration reply"))
		web := spec("web", "veth-web", 0x1001)
		web.Standby = true
		if err := a.Attach(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		web.Standby = false
		if err := a.Attach(t.Context(), web); err != nil {
			t.Fatalf("commit with mapsrv down: %v (not an error: the agent keeps trying)", err)
		}
		if s := state(t, a, "web"); s.State != locator.StateActive || s.Registered {
			t.Fatalf("after a commit with mapsrv down: %+v", s)
		}
		if err := a.Abort(t.Context(), "web"); err != nil {
			t.Fatalf("abort of a commit mapsrv never accepted: %v", err)
		}
		aborted := len(reg.Registrations())
		reg.SetErr(nil)
		time.Sleep(time.Minute)
		synctest.Wait()
		// After the abort only the withdrawal of the standby role goes
		// out (retried until mapsrv answers), never a claim.
		after := reg.Registrations()[aborted:]
		for _, r := range after {
			if !r.Standby || r.Lifetime != 0 {
				t.Errorf("registration after the abort: %+v", r)
			}
		}
		if len(after) == 0 {
			t.Errorf("the standby role was not withdrawn after the abort")
		}
		n := len(reg.Registrations())
		time.Sleep(time.Minute)
		synctest.Wait()
		if m := len(reg.Registrations()); m != n {
			t.Errorf("%d more registrations once the withdrawal was answered", m-n)
		}
		if n := len(dp.LocalEntries()); n != 0 {
			t.Errorf("%d local entries after abort", n)
		}
		if _, ok := a.Task("web"); ok {
			t.Error("aborted task still listed")
		}

		// Committed and accepted: the move happened, abort refuses.
		if err := a.Attach(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		if err := a.Abort(t.Context(), "web"); !errors.Is(err, locator.ErrNotPrepared) {
			t.Errorf("abort of an accepted claim: %v, want ErrNotPrepared", err)
		}
	})
}

// TestAbortClaimAcceptedAnswerLost: the commit's claim reached mapsrv and
// was accepted, but its answer was lost (chaos reg-loss: 30% of the
// registration packets dropped). The lab, told the move failed, aborts:
// the store maps the task to this NVE, so the move happened and the abort
// is refused (the lab then finishes the move instead of leaving the task
// mapped to an NVE without its port).
func TestAbortClaimAcceptedAnswerLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, dp, reg, src := prepareAgent(t)
		web := spec("web", "veth-web", 0x1001)
		web.Standby = true
		if err := a.Attach(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		reg.SetErr(errors.New("no registration reply"))
		web.Standby = false
		if err := a.Attach(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		// mapsrv committed the claim; only its answers were lost.
		here := task(0x1001, "nve-a", locA)
		here.Name, here.Version = "web", 2
		src.SetTask(here)
		synctest.Wait()
		if err := a.Abort(t.Context(), "web"); !errors.Is(err, locator.ErrNotPrepared) {
			t.Fatalf("abort of a claim the store holds: %v, want ErrNotPrepared", err)
		}
		if s := state(t, a, "web"); s.State != locator.StateActive {
			t.Errorf("after the refused abort: %+v", s)
		}
		if n := len(dp.LocalEntries()); n != 1 {
			t.Errorf("%d local entries after the refused abort, want 1", n)
		}
	})
}

// TestAbortWithdrawalRetriesTransientRefusal: the standby withdrawal of
// an aborted task refused as a replay (mapsrv restarted and the client
// had not resynchronised), or by a failing store, is sent again until
// mapsrv answers it; only a refusal about the request itself (not the
// standby) ends it. It used to stop at any refusal, leaving the store
// naming a standby without a port (TestMoveRefusals after a restart).
func TestAbortWithdrawalRetriesTransientRefusal(t *testing.T) {
	for _, reason := range []string{"replay", "internal error"} {
		t.Run(reason, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, _, reg, _ := prepareAgent(t)
				web := spec("web", "veth-web", 0x1001)
				web.Standby = true
				if err := a.Attach(t.Context(), web); err != nil {
					t.Fatal(err)
				}
				reg.SetErr(&locator.RejectedError{Reason: reason})
				if err := a.Abort(t.Context(), "web"); err != nil {
					t.Fatalf("abort: %v", err)
				}
				time.Sleep(10 * time.Second)
				synctest.Wait()
				refused := len(reg.Registrations())
				reg.SetErr(nil)
				time.Sleep(10 * time.Second)
				synctest.Wait()
				after := reg.Registrations()[refused:]
				if len(after) == 0 {
					t.Fatalf("withdrawal not sent again after a %q refusal", reason)
				}
				for _, r := range after {
					if !r.Standby || r.Lifetime != 0 {
						t.Errorf("registration after the abort: %+v", r)
					}
				}
			})
		})
	}
}
