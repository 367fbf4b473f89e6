package locator_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

var (
	sirP = mustSIR("3333:0:0:1::/64")
	dom  = ila.Domain{Name: "prod", SIR: sirP, Csum: ila.CsumNeutralMap}
	locA = ila.Locator(0x2001_0000_0000_000a)
	locB = ila.Locator(0x2001_0000_0000_000b)
	locC = ila.Locator(0x2001_0000_0000_000c)
)

func mustSIR(s string) ila.SIRPrefix {
	p, err := ila.ParseSIRPrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}

// task is a record as mapsrv stores it; one on another NVE than the
// agent's (nve-a) carries the reason of its move, as a mapping service
// that checks claims writes it (unjustifiedMove drops it).
func task(id ila.Identifier, nve string, loc ila.Locator) ila.Task {
	t := ila.Task{Domain: "prod", Name: "t" + id.Hex()[12:], Identifier: id, SIR: sirP.Addr(id), Locator: loc, NVE: nve, State: ila.StateActive, Version: 1}
	if nve != "nve-a" {
		t.MovedBy = "operator"
	}
	return t
}

func mapping(id ila.Identifier, loc ila.Locator) ila.Mapping {
	return ila.Mapping{SIR: sirP, Identifier: id, Locator: loc, Csum: ila.CsumNeutralMap, Tenant: ila.TenantOf(ila.DefaultTenant)}
}

func table(ms ...ila.Mapping) map[locatortest.Key]ila.Mapping {
	out := map[locatortest.Key]ila.Mapping{}
	for _, m := range ms {
		out[locatortest.Key{SIR: m.SIR, ID: m.Identifier}] = m
	}
	return out
}

func newAgent(t *testing.T, mode locator.Mode, dp locator.Datapath, src locator.MappingSource, mut ...func(*locator.Config)) *locator.Agent {
	t.Helper()
	cfg := locator.Config{
		Node: "nve-a", Locators: []locator.LocatorSpec{{Locator: locA}}, Mode: mode,
		Datapath: dp, Source: src,
	}
	for _, f := range mut {
		f(&cfg)
	}
	a, err := locator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ev(typ ila.EventType, t ila.Task) ila.Event { return ila.Event{Type: typ, Task: &t} }

func TestApplyEvents(t *testing.T) {
	dEv := ila.Event{Type: ila.EventDomainUpsert, Domain: &dom}
	synced := ila.Event{Type: ila.EventSynced}
	suspended := task(0x1002, "nve-b", locB)
	suspended.State = ila.StateSuspended
	tests := []struct {
		name   string
		mode   locator.Mode
		events []ila.Event
		want   map[locatortest.Key]ila.Mapping
	}{
		{
			name:   "list then sync",
			events: []ila.Event{dEv, ev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB)), ev(ila.EventTaskUpsert, task(0x1002, "nve-c", locC)), synced},
			want:   table(mapping(0x1001, locB), mapping(0x1002, locC)),
		},
		{
			name:   "task before its domain",
			events: []ila.Event{ev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB)), dEv, synced},
			want:   table(mapping(0x1001, locB)),
		},
		{
			name:   "move and delete",
			events: []ila.Event{dEv, ev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB)), ev(ila.EventTaskUpsert, task(0x1002, "nve-b", locB)), synced, ev(ila.EventTaskUpsert, task(0x1001, "nve-c", locC)), ev(ila.EventTaskDelete, task(0x1002, "nve-b", locB))},
			want:   table(mapping(0x1001, locC)),
		},
		{
			name:   "suspended task is not mapped",
			events: []ila.Event{dEv, ev(ila.EventTaskUpsert, task(0x1002, "nve-b", locB)), synced, ev(ila.EventTaskUpsert, suspended)},
			want:   table(),
		},
		{
			name:   "domain deleted removes its mappings",
			events: []ila.Event{dEv, ev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB)), synced, {Type: ila.EventDomainDelete, Domain: &dom}},
			want:   table(),
		},
		{
			name:   "identifier that cannot round-trip is refused",
			events: []ila.Event{dEv, ev(ila.EventTaskUpsert, task(0x10000, "nve-b", locB)), synced},
			want:   table(),
		},
		{
			name:   "pull mode installs nothing unasked",
			mode:   locator.ModePull,
			events: []ila.Event{dEv, ev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB)), synced},
			want:   table(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dp := locatortest.NewDatapath()
			a := newAgent(t, tc.mode, dp, locatortest.NewSource())
			for _, e := range tc.events {
				a.Apply(e)
			}
			if diff := cmp.Diff(tc.want, dp.Table()); diff != "" {
				t.Errorf("datapath (-want +got):\n%s", diff)
			}
		})
	}
}

// run starts the agent and returns a stop function that waits for Run.
func run(t *testing.T, a *locator.Agent) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestRelistConverges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		// Left over from a previous run (pinned maps): one stale entry, one
		// still right. Nothing is flushed at start.
		stale, kept := mapping(0x1009, locC), mapping(0x1001, locB)
		dp.UpsertMapping(stale)
		dp.UpsertMapping(kept)
		src := locatortest.NewSource()
		src.SetDomain(dom)
		src.SetTask(task(0x1001, "nve-b", locB))
		src.SetTask(task(0x1002, "nve-c", locC))
		a := newAgent(t, "", dp, src)
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if diff := cmp.Diff(table(kept, mapping(0x1002, locC)), dp.Table()); diff != "" {
			t.Fatalf("after first sync (-want +got):\n%s", diff)
		}
		// While disconnected, one task vanishes (its delete is never seen)
		// and one moves; the relist must converge to exactly the store.
		src.Disconnect()
		src.DeleteTaskQuietly(task(0x1001, "nve-b", locB))
		src.SetTask(task(0x1002, "nve-b", locB))
		src.SetTask(task(0x1003, "nve-c", locC))
		time.Sleep(10 * time.Second) // past the retry backoff
		synctest.Wait()
		if diff := cmp.Diff(table(mapping(0x1002, locB), mapping(0x1003, locC)), dp.Table()); diff != "" {
			t.Errorf("after relist (-want +got):\n%s", diff)
		}
		if st := a.Stats(); st.Syncs != 2 || st.WatchErrors != 1 || st.Mappings != 2 {
			t.Errorf("stats: syncs %d watch errors %d mappings %d, want 2 1 2", st.Syncs, st.WatchErrors, st.Mappings)
		}
	})
}

func spec(name, iface string, id ila.Identifier) locator.TaskSpec {
	return locator.TaskSpec{Name: name, Tenant: "t1", Iface: iface, SIR: sirP.Addr(id), MAC: ila.MAC{2, 0, 0, 0, 0, byte(id)}}
}

func TestAttachRegisterMoveAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: 20 * time.Second}
		// The registrar plays mapsrv: it commits the task at this NVE.
		reg.OnRegister = func(r locator.Registration) {
			if r.Lifetime > 0 {
				tk := task(ila.IdentifierOf(r.SIR), r.NVE, r.Locator)
				tk.Name = r.Name
				go src.SetTask(tk)
			}
		}
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg; c.InFlight = ila.Duration(5 * time.Second) })
		stop := run(t, a)
		defer stop()
		synctest.Wait()

		const id = ila.Identifier(0x1001)
		if err := a.Attach(t.Context(), spec("web", "veth-web", id)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		k := locatortest.Key{SIR: sirP, ID: id}
		if got := dp.LocalEntries()[k]; got.Identifier != id || got.MAC != (ila.MAC{2, 0, 0, 0, 0, 1}) {
			t.Errorf("local entry %+v", got)
		}
		if diff := cmp.Diff(table(mapping(id, locA)), dp.Table()); diff != "" {
			t.Errorf("table after attach (-want +got):\n%s", diff)
		}
		want := locator.Registration{NVE: "nve-a", Locator: locA, Domain: "prod", Name: "web", Tenant: "t1", SIR: sirP.Addr(id), MAC: ila.MAC{2, 0, 0, 0, 0, 1}, Lifetime: 120 * time.Second, Mode: ila.MoveHot}
		if diff := cmp.Diff([]locator.Registration{want}, reg.Registrations(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("registrations (-want +got):\n%s", diff)
		}
		// Re-registration at half the granted lifetime: a refresh, not a
		// claim.
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		if rs := reg.Registrations(); len(rs) != 2 {
			t.Errorf("after 10s: %d registrations, want 2", len(rs))
		} else if rs[1].Mode != ila.MoveNone {
			t.Error("the re-registration is sent as a claim")
		}

		// The task moves to nve-b; the store keeps A as previous for 3s.
		moved := task(id, "nve-b", locB)
		moved.Name = "web"
		moved.Previous = []ila.Previous{{Locator: locA, NVE: "nve-a", Until: time.Now().Add(3 * time.Second)}}
		src.SetTask(moved)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[k]; ok {
			t.Error("local entry still there after the move")
		}
		if diff := cmp.Diff(map[locatortest.Key]locatortest.InFlight{k: {Mapping: mapping(id, locB), Until: moved.Previous[0].Until}}, dp.InFlightEntries()); diff != "" {
			t.Errorf("in-flight (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(table(mapping(id, locB)), dp.Table()); diff != "" {
			t.Errorf("table after move (-want +got):\n%s", diff)
		}
		// Listed as moved away (hooks read it to retry idempotently).
		if ts := a.Tasks(); len(ts) != 1 || ts[0].State != locator.StateMoved || ts[0].Locator != locB || ts[0].Registered {
			t.Errorf("tasks after move away: %+v, want web moved to %s", ts, locB)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := len(dp.InFlightEntries()); n != 0 {
			t.Errorf("%d in-flight entries after the deadline", n)
		}
		// No more registrations of a task that left (and no deregistration).
		n := len(reg.Registrations())
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := len(reg.Registrations()); got != n {
			t.Errorf("%d registrations after moving away, want %d", got, n)
		}
	})
}

func TestNotifyBeforeWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.InFlight = ila.Duration(2 * time.Second) })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		const id = ila.Identifier(0x1001)
		if err := a.Attach(t.Context(), spec("web", "veth-web", id)); err != nil {
			t.Fatal(err)
		}
		local, err := a.Notify(sirP.Addr(id), locB, "nve-b", 2*time.Second)
		if err != nil || !local {
			t.Fatalf("Notify = %v, %v; want true, nil", local, err)
		}
		k := locatortest.Key{SIR: sirP, ID: id}
		if _, ok := dp.LocalEntries()[k]; ok {
			t.Error("local entry kept after the notification")
		}
		want := mapping(id, locB)
		want.Tenant = 0 // in-flight entries re-translate: no tenant check there
		if got := dp.InFlightEntries()[k].Mapping; got != want {
			t.Errorf("in-flight %+v", got)
		}
		if got := dp.Table()[k]; got != mapping(id, locB) {
			t.Errorf("mapping %+v, want to locator B ahead of the watch", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(dp.InFlightEntries()); n != 0 {
			t.Errorf("%d in-flight entries after the timer", n)
		}
		if _, err := a.Notify(netip.MustParseAddr("4444::1"), locB, "nve-b", 2*time.Second); err == nil {
			t.Error("notification for an unknown domain accepted")
		}
	})
}

func TestAttachRejectedRollsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Err: &locator.RejectedError{Reason: "identifier owned by another NVE"}}
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		err := a.Attach(t.Context(), spec("web", "veth-web", 0x1001))
		var rej *locator.RejectedError
		if !errors.As(err, &rej) {
			t.Fatalf("Attach error %v, want a RejectedError", err)
		}
		if n := len(dp.LocalEntries()); n != 0 || len(a.Tasks()) != 0 || len(dp.Ports()) != 0 {
			t.Errorf("attach not undone: %d local entries, tasks %v, ports %v", n, a.Tasks(), dp.Ports())
		}
	})
}

func TestControlPlaneDownKeepsForwarding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		src.SetTask(task(0x1002, "nve-b", locB))
		reg := &locatortest.Registrar{Grant: 8 * time.Second}
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if err := a.Attach(t.Context(), spec("web", "veth-web", 0x1001)); err != nil {
			t.Fatal(err)
		}
		reg.SetErr(errors.New("mapsrv unreachable"))
		src.Disconnect()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		k := locatortest.Key{SIR: sirP, ID: 0x1001}
		if _, ok := dp.LocalEntries()[k]; !ok {
			t.Error("local entry lost while the control plane is down")
		}
		if _, ok := dp.Table()[locatortest.Key{SIR: sirP, ID: 0x1002}]; !ok {
			t.Error("mapping lost while the control plane is down")
		}
		st := a.Stats()
		if st.RegErrors == 0 || st.WatchErrors == 0 {
			t.Errorf("stats %+v: want registration and watch errors counted", st)
		}
		// Back: registrations succeed again and the watch resyncs.
		reg.SetErr(nil)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if st2 := a.Stats(); st2.RegAccepted <= st.RegAccepted || !st2.Synced {
			t.Errorf("after recovery: accepted %d (was %d), synced %v", st2.RegAccepted, st.RegAccepted, st2.Synced)
		}
	})
}

type missQueue chan locator.Miss

func (q missQueue) ReadMiss(ctx context.Context) (locator.Miss, error) {
	select {
	case m := <-q:
		return m, nil
	case <-ctx.Done():
		return locator.Miss{}, ctx.Err()
	}
}

func TestPullModeMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		src.SetTask(task(0x1002, "nve-b", locB))
		src.SetTask(task(0x1003, "nve-c", locC))
		q := make(missQueue)
		a := newAgent(t, locator.ModePull, dp, src, func(c *locator.Config) { c.Misses = q; c.Lookup = src; c.MissRate = 5 })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		if n := len(dp.Table()); n != 0 {
			t.Fatalf("pull mode installed %d mappings unasked", n)
		}
		q <- locator.Miss{SIR: sirP, Identifier: 0x1002}
		synctest.Wait()
		if diff := cmp.Diff(table(mapping(0x1002, locB)), dp.Table()); diff != "" {
			t.Errorf("after miss (-want +got):\n%s", diff)
		}
		// Changes to an installed entry follow the watch.
		src.SetTask(task(0x1002, "nve-c", locC))
		synctest.Wait()
		if diff := cmp.Diff(table(mapping(0x1002, locC)), dp.Table()); diff != "" {
			t.Errorf("after move (-want +got):\n%s", diff)
		}
		// Not in the watch cache yet: fetched from the store (GetTask).
		src.Disconnect()
		src.SetTask(task(0x1004, "nve-b", locB))
		q <- locator.Miss{SIR: sirP, Identifier: 0x1004}
		synctest.Wait()
		if _, ok := dp.Table()[locatortest.Key{SIR: sirP, ID: 0x1004}]; !ok {
			t.Error("miss of an identifier unknown to the watch not fetched from the store")
		}
		// Rate limit: 20 misses at once, 5 per second allowed.
		for i := range 20 {
			q <- locator.Miss{SIR: sirP, Identifier: ila.Identifier(0x2000 + i)}
		}
		synctest.Wait()
		st := a.Stats()
		if st.Misses != 22 || st.MissDropped < 15 {
			t.Errorf("misses %d dropped %d, want 22 and >= 15", st.Misses, st.MissDropped)
		}
	})
}

// TestPullModeAging checks that entries pulled on a miss age out after
// PullTTL, that a miss after that pulls them again, and that PullMax evicts
// the oldest first.
func TestPullModeAging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := locatortest.NewDatapath()
		src := locatortest.NewSource()
		src.SetDomain(dom)
		for id := ila.Identifier(0x3001); id <= 0x3006; id++ {
			src.SetTask(task(id, "nve-b", locB))
		}
		q := make(missQueue)
		a := newAgent(t, locator.ModePull, dp, src, func(c *locator.Config) {
			c.Misses, c.Lookup = q, src
			c.PullTTL = ila.Duration(time.Minute)
			c.PullMax = 4
		})
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		installed := func(id ila.Identifier) bool {
			_, ok := dp.Table()[locatortest.Key{SIR: sirP, ID: id}]
			return ok
		}
		q <- locator.Miss{SIR: sirP, Identifier: 0x3001}
		synctest.Wait()
		time.Sleep(30 * time.Second)
		q <- locator.Miss{SIR: sirP, Identifier: 0x3002}
		synctest.Wait()
		if !installed(0x3001) || !installed(0x3002) {
			t.Fatalf("misses not pulled: %v", dp.Table())
		}
		// 0x3001 is a minute old after another 30 s (plus the sweep period).
		time.Sleep(30*time.Second + 15*time.Second)
		synctest.Wait()
		if installed(0x3001) {
			t.Error("entry pulled more than PullTTL ago still installed")
		}
		if !installed(0x3002) {
			t.Error("entry pulled 45 s ago (TTL 1 min) evicted")
		}
		if st := a.Stats(); st.PullEvicted != 1 || st.Pulled != 1 {
			t.Errorf("pulled %d evicted %d, want 1 and 1", st.Pulled, st.PullEvicted)
		}
		// A flow still using it misses again and pulls it again.
		q <- locator.Miss{SIR: sirP, Identifier: 0x3001}
		synctest.Wait()
		if !installed(0x3001) {
			t.Error("aged-out entry not pulled again on its next miss")
		}
		// PullMax 4: the fifth pull evicts the oldest (0x3002) first.
		for id := ila.Identifier(0x3003); id <= 0x3005; id++ {
			time.Sleep(time.Second)
			q <- locator.Miss{SIR: sirP, Identifier: id}
			synctest.Wait()
		}
		if installed(0x3002) {
			t.Error("oldest entry kept beyond PullMax")
		}
		for _, id := range []ila.Identifier{0x3001, 0x3003, 0x3004, 0x3005} {
			if !installed(id) {
				t.Errorf("entry %v evicted, want only the oldest gone", id)
			}
		}
		if st := a.Stats(); st.Pulled > 4 {
			t.Errorf("working set %d, want at most PullMax 4", st.Pulled)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	good := func() locator.Config {
		return locator.Config{Node: "n", Locators: []locator.LocatorSpec{{Locator: locA}}, Datapath: dp, Source: src}
	}
	tests := []struct {
		name string
		mut  func(*locator.Config)
	}{
		{"no node", func(c *locator.Config) { c.Node = "" }},
		{"no locator", func(c *locator.Config) { c.Locators = nil }},
		{"two default locators", func(c *locator.Config) { c.Locators = append(c.Locators, locator.LocatorSpec{Locator: locB}) }},
		{"bad mode", func(c *locator.Config) { c.Mode = "both" }},
		{"short lifetime", func(c *locator.Config) { c.Lifetime = ila.Duration(time.Second) }},
		{"no datapath", func(c *locator.Config) { c.Datapath = nil }},
		{"task without iface", func(c *locator.Config) { c.Tasks = []locator.TaskSpec{{Name: "x", SIR: sirP.Addr(1)}} }},
		{"task with IPv4 and no VNI", func(c *locator.Config) {
			s := spec("x", "v", 1)
			s.IPv4 = netip.MustParseAddr("10.0.0.1")
			c.Tasks = []locator.TaskSpec{s}
		}},
		{"duplicate task", func(c *locator.Config) { c.Tasks = []locator.TaskSpec{spec("x", "v", 1), spec("y", "w", 1)} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mut(&c)
			if _, err := locator.New(c); err == nil {
				t.Error("New accepted a bad config")
			}
		})
	}
	if _, err := locator.New(good()); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func TestParseLocatorSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    locator.LocatorSpec
		wantErr bool
	}{
		{in: "2001:0:0:a", want: locator.LocatorSpec{Locator: locA}},
		{in: "prod=2001:0:0:a::/64", want: locator.LocatorSpec{Domain: "prod", Locator: locA}},
		{in: "=2001:0:0:a", wantErr: true},
		{in: "prod=2001::1/128", wantErr: true},
		{in: "0:0:0:0", wantErr: true},
	}
	for _, tc := range tests {
		got, err := locator.ParseLocatorSpec(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseLocatorSpec(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); !tc.wantErr && diff != "" {
			t.Errorf("ParseLocatorSpec(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestStandbyThenCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: time.Minute}
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		s := spec("web", "veth-web", 0x1001)
		s.Standby = true
		if err := a.Attach(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, ok := dp.LocalEntries()[locatortest.Key{SIR: sirP, ID: 0x1001}]; !ok {
			t.Error("standby task has no local entry")
		}
		// A standby registers as the task's standby only (failover).
		before := reg.Registrations()
		for _, r := range before {
			if !r.Standby || r.Mode != ila.MoveNone {
				t.Errorf("standby task sent %+v, want standby registrations only", r)
			}
		}
		if len(before) == 0 {
			t.Error("standby task not registered as standby")
		}
		s.Standby = false
		if err := a.Attach(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		if after := reg.Registrations()[len(before):]; len(after) != 1 || after[0].Standby || after[0].Mode != ila.MoveHot {
			t.Errorf("committed task sent %+v, want one claim", after)
		}
		if ts := a.Tasks(); len(ts) != 1 || ts[0].Standby || !ts[0].Registered {
			t.Errorf("tasks after commit: %+v", ts)
		}
	})
}
