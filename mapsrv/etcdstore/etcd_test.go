package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	sirPrefix = ila.SIRPrefix(0x20010db800000000)
	locA      = ila.Locator(0xfd00000000000001)
	locB      = ila.Locator(0xfd00000000000002)
	locC      = ila.Locator(0xfd00000000000003)
)

// setup creates a domain and NVEs a, b, c through svc.
func setup(t *testing.T, svc *mapsrv.Service, regAddrs map[string]netip.AddrPort) {
	t.Helper()
	ctx := t.Context()
	if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sirPrefix, Csum: ila.CsumNeutralMap}); err != nil {
		t.Fatalf("add domain: %v", err)
	}
	for i, name := range []string{"a", "b", "c"} {
		n := mapsrv.NVERecord{NVE: ila.NVE{Name: name, Locators: []ila.Locator{[]ila.Locator{locA, locB, locC}[i]}, Underlay: netip.AddrFrom16([16]byte{0xfd, 0x99, 15: byte(i + 1)})}, RegAddr: regAddrs[name]}
		if err := svc.AddNVE(ctx, n); err != nil {
			t.Fatalf("add nve: %v", err)
		}
	}
}

func newService(t *testing.T, kv clientv3.KV, mod func(*mapsrv.Config)) *mapsrv.Service {
	t.Helper()
	cfg := mapsrv.Config{Store: etcdstore.New(kv)}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := mapsrv.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// events collects watch events.
type events struct {
	mu  sync.Mutex
	evs []ila.Event
	ch  chan struct{}
}

func watch(t *testing.T, w *etcdstore.Watcher, hook func(ila.Event)) *events {
	t.Helper()
	e := &events{ch: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, func(ev ila.Event) {
			if hook != nil {
				hook(ev)
			}
			e.mu.Lock()
			e.evs = append(e.evs, ev)
			e.mu.Unlock()
			select {
			case e.ch <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Watch did not return after cancel")
		}
	})
	return e
}

// waitFor waits until cond holds over the events seen so far.
func (e *events) waitFor(t *testing.T, what string, cond func([]ila.Event) bool) []ila.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		evs := append([]ila.Event(nil), e.evs...)
		e.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; events: %s", what, summary(evs))
		}
	}
}

func summary(evs []ila.Event) []string {
	var out []string
	for _, ev := range evs {
		s := ev.Type.String()
		switch {
		case ev.Task != nil:
			s += fmt.Sprintf(" %s@%s v%d", ev.Task.Name, ev.Task.NVE, ev.Task.Version)
		case ev.NVE != nil:
			s += " " + ev.NVE.Name
		case ev.Domain != nil:
			s += " " + ev.Domain.Name
		}
		out = append(out, s)
	}
	return out
}

func count(evs []ila.Event, typ ila.EventType) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

func register(t *testing.T, svc *mapsrv.Service, nve, name, sir string) mapsrv.TaskRecord {
	t.Helper()
	rec, err := svc.Register(t.Context(), mapsrv.Registration{NVE: nve, Tenant: "t1", Name: name, SIR: netip.MustParseAddr(sir)})
	if err != nil {
		t.Fatalf("register %s at %s: %v", name, nve, err)
	}
	return rec
}

func TestWatchListThenChanges(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	register(t, svc, "a", "vm1", "2001:db8::1")

	e := watch(t, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}), nil)
	evs := e.waitFor(t, "synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 1 })
	want := []string{"domain-upsert prod", "task-upsert vm1@a v1", "nve-upsert a", "nve-upsert b", "nve-upsert c", "synced"}
	if diff := cmp.Diff(want, summary(evs)); diff != "" {
		t.Errorf("initial list (-want +got):\n%s", diff)
	}
	listRev := evs[len(evs)-1].Revision

	rec, err := svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Deregister(t.Context(), mapsrv.DeregisterRequest{Tenant: "t1", Name: "vm1"}); err != nil {
		t.Fatal(err)
	}
	evs = e.waitFor(t, "task delete", func(evs []ila.Event) bool { return count(evs, ila.EventTaskDelete) == 1 })
	tail := evs[6:]
	// The move pins b's locator (an NVE update) and moves the task, in
	// one transaction.
	want = []string{"nve-upsert b", "task-upsert vm1@b v2", "task-delete vm1@b v2"}
	if diff := cmp.Diff(want, summary(tail)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	for _, ev := range tail {
		if ev.Revision <= listRev {
			t.Errorf("event %s revision %d not after the list revision %d", ev.Type, ev.Revision, listRev)
		}
	}
	if tail[0].Revision != tail[1].Revision {
		t.Errorf("events of one transaction at revisions %d and %d", tail[0].Revision, tail[1].Revision)
	}
	if mt := tail[1].Task; mt == nil || mt.Locator != rec.Locator || len(mt.Previous) != 1 || mt.Previous[0].Locator != locA {
		t.Errorf("moved task event: %+v", mt)
	}
}

func TestWatchCompactionRelists(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	register(t, svc, "a", "gone", "2001:db8::1")
	register(t, svc, "a", "moved", "2001:db8::2")
	register(t, svc, "a", "same", "2001:db8::3")

	// Hold the watcher at the end of its first list, before it watches;
	// meanwhile change things and compact the history away.
	hold := make(chan struct{})
	first := true
	e := watch(t, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{MinBackoff: 10 * time.Millisecond}), func(ev ila.Event) {
		if ev.Type == ila.EventSynced && first {
			first = false
			<-hold
		}
	})
	e.waitFor(t, "first synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 0 && len(evs) >= 7 })
	ctx := t.Context()
	if err := svc.Deregister(ctx, mapsrv.DeregisterRequest{Tenant: "t1", Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t1", Name: "moved", To: "c"}); err != nil {
		t.Fatal(err)
	}
	register(t, svc, "b", "new", "2001:db8::4")
	resp, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	close(hold)
	evs := e.waitFor(t, "second synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 2 })
	// Replay the events into a table, as a consumer would.
	state := map[string]ila.Task{}
	var afterFirst []string
	synced := 0
	for _, ev := range evs {
		switch ev.Type {
		case ila.EventTaskUpsert:
			state[ev.Task.Name] = *ev.Task
		case ila.EventTaskDelete:
			delete(state, ev.Task.Name)
		case ila.EventSynced:
			synced++
			continue
		}
		if synced == 1 && ev.Task != nil {
			afterFirst = append(afterFirst, summary([]ila.Event{ev})[0])
		}
	}
	got := map[string]string{}
	for n, tk := range state {
		got[n] = tk.NVE
	}
	if diff := cmp.Diff(map[string]string{"moved": "c", "same": "a", "new": "b"}, got); diff != "" {
		t.Errorf("state after relist (-want +got):\n%s", diff)
	}
	// Only the difference is delivered: the delete of "gone", "moved" and
	// "new"; "same" is not repeated.
	wantDiff := []string{"task-upsert moved@c v2", "task-upsert new@b v1", "task-delete gone@a v1"}
	if diff := cmp.Diff(wantDiff, afterFirst); diff != "" {
		t.Errorf("task events of the relist (-want +got):\n%s", diff)
	}
}

func TestMalformedValuesSkipped(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	ctx := t.Context()
	bad := map[string]string{
		mapsrv.MapPrefix + "prod/0000000000000009": `{"domain":"prod"`,
		mapsrv.MapPrefix + "prod/nothex":           `{}`,
		mapsrv.NVEPrefix + "broken":                `{"name":"broken","locators":["x"]}`,
		mapsrv.DomainPrefix + "broken":             `"just a string"`,
		mapsrv.NamePrefix + "t1/ghost":             `{"domain":"prod","identifier":"0:0:0:9"}`,
	}
	for k, v := range bad {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	e := watch(t, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}), nil)
	e.waitFor(t, "synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 1 })
	if _, err := cli.Put(ctx, mapsrv.MapPrefix+"prod/0000000000000001", "garbage"); err != nil {
		t.Fatal(err)
	}
	register(t, svc, "a", "vm1", "2001:db8::2")
	evs := e.waitFor(t, "vm1", func(evs []ila.Event) bool { return count(evs, ila.EventTaskUpsert) == 1 })
	// (the registration pins a's locator to prod: an NVE update)
	want := []string{"domain-upsert prod", "nve-upsert a", "nve-upsert b", "nve-upsert c", "synced", "nve-upsert a", "task-upsert vm1@a v1"}
	if diff := cmp.Diff(want, summary(evs)); diff != "" {
		t.Errorf("events with malformed values around (-want +got):\n%s", diff)
	}

	st := etcdstore.New(cli)
	if _, err := st.TaskByName(ctx, "t1", "ghost"); !errors.Is(err, mapsrv.ErrMalformed) {
		t.Errorf("TaskByName over a malformed task: %v, want ErrMalformed", err)
	}
	if ts, err := st.Tasks(ctx); err != nil || len(ts) != 1 {
		t.Errorf("Tasks = %d, %v; want 1", len(ts), err)
	}
	if ns, err := st.NVEs(ctx); err != nil || len(ns) != 3 {
		t.Errorf("NVEs = %d, %v; want 3", len(ns), err)
	}
	if ds, err := st.Domains(ctx); err != nil || len(ds) != 1 {
		t.Errorf("Domains = %d, %v; want 1", len(ds), err)
	}
	if ts, err := svc.Tasks(ctx); err != nil || len(ts) != 1 {
		t.Errorf("Service.Tasks = %d, %v; want 1", len(ts), err)
	}
	if _, err := svc.Sweep(ctx); err != nil {
		t.Errorf("Sweep: %v", err)
	}
}

func TestStoreLookups(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	ctx := t.Context()
	mac := ila.MAC{2, 0, 0, 0, 0, 7}
	rec, err := svc.Register(ctx, mapsrv.Registration{NVE: "c", Tenant: "t4", Name: "v4", IPv4: netip.MustParseAddr("10.0.0.7"), VNI: 7, MAC: mac, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	st := etcdstore.New(cli)
	for name, get := range map[string]func() (ila.Task, error){
		"GetTask":    func() (ila.Task, error) { return st.GetTask(ctx, "prod", rec.Identifier) },
		"TaskByName": func() (ila.Task, error) { return st.TaskByName(ctx, "t4", "v4") },
		"TaskByMAC":  func() (ila.Task, error) { return st.TaskByMAC(ctx, mac) },
	} {
		got, err := get()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if diff := cmp.Diff(rec.Task, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	if _, err := st.GetTask(ctx, "prod", 12345); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("GetTask of a missing task: %v, want ErrNotFound", err)
	}
	if _, err := st.TaskByMAC(ctx, ila.MAC{2}); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("TaskByMAC of a missing mac: %v, want ErrNotFound", err)
	}
}

// barrier is shared by stores whose Txn calls wait until n callers wait,
// so that concurrent movers all read before any writes.
type barrier struct {
	mu      sync.Mutex
	n, wait int
	rel     chan struct{}
}

func TestConcurrentMovesOneWinner(t *testing.T) {
	cli, eps := etcdtest.Start(t)
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	register(t, svc, "a", "vm1", "2001:db8::1")
	// Three replicas, each with its own client, moving one task at once.
	targets := []string{"b", "c", "b"}
	bar := &barrier{n: len(targets)}
	errs := make(chan error, len(targets))
	for _, to := range targets {
		c := etcdtest.NewClient(t, eps)
		rs, err := mapsrv.New(mapsrv.Config{Store: barrierOver(bar, etcdstore.New(c))})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := rs.Move(context.Background(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: to})
			errs <- err
		}()
	}
	won, lost := 0, 0
	for range targets {
		switch err := <-errs; {
		case err == nil:
			won++
		case errors.Is(err, mapsrv.ErrConflict):
			lost++
		default:
			t.Errorf("move: %v", err)
		}
	}
	if won != 1 || lost != len(targets)-1 {
		t.Errorf("%d winners, %d conflicts; want 1 and %d", won, lost, len(targets)-1)
	}
	rec, err := svc.Task(t.Context(), "t1", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != 2 || len(rec.Previous) != 1 || rec.Previous[0].NVE != "a" {
		t.Errorf("after the race: version %d previous %+v; want 2 and [a]", rec.Version, rec.Previous)
	}
}

// sharedBarrier lets several stores share one barrier.
type sharedBarrier struct {
	mapsrv.Store
	b *barrier
}

func barrierOver(b *barrier, s mapsrv.Store) mapsrv.Store { return &sharedBarrier{Store: s, b: b} }

func (s *sharedBarrier) Txn(ctx context.Context, c []mapsrv.Cond, o []mapsrv.Op) (int64, error) {
	s.b.mu.Lock()
	if s.b.rel == nil {
		s.b.rel = make(chan struct{})
	}
	rel := s.b.rel
	if s.b.wait++; s.b.wait == s.b.n {
		close(rel)
	}
	s.b.mu.Unlock()
	select {
	case <-rel:
	case <-time.After(10 * time.Second):
	}
	return s.Store.Txn(ctx, c, o)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestSweeperExpiresThroughWatch(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	clk := &clock{now: time.Now()}
	// The sweeper follows the store through a watch and reads only what is
	// due; its full sweep is out of reach of this test.
	sw := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{})
	svc := newService(t, cli, func(c *mapsrv.Config) {
		c.Now = clk.Now
		c.SweepInterval = 20 * time.Millisecond
		c.Events = sw.Watch
		c.FullSweepInterval = time.Hour
	})
	setup(t, svc, nil)
	ctx := t.Context()
	if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "short", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: 8 * time.Second}); err != nil {
		t.Fatal(err)
	}
	e := watch(t, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}), nil)
	e.waitFor(t, "synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 1 })
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- svc.Run(rctx) }()
	// A replica grants one lifetime from its start (docs/FAILOVER.md):
	// let it start before the clock moves.
	for svc.UpSince().IsZero() {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(8 * time.Second)
	e.waitFor(t, "expiry delete", func(evs []ila.Event) bool { return count(evs, ila.EventTaskDelete) == 1 })
	// The sweeper counts once its transaction's answer is back, which may
	// be after the watch saw the delete.
	for deadline := time.Now().Add(5 * time.Second); svc.Stats().Expiries == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if st := svc.Stats(); st.Expiries != 1 {
		t.Errorf("expiries = %d, want 1", st.Expiries)
	}
	resp, err := cli.Get(ctx, mapsrv.Prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if k := string(kv.Key); k != mapsrv.DomainKey("prod") && k != mapsrv.SIRIndexKey(0x20010db800000000) && k[:len(mapsrv.NVEPrefix)] != mapsrv.NVEPrefix {
			t.Errorf("key left after expiry: %s", k)
		}
	}
}

func TestClusterMemberDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-member etcd cluster")
	}
	c := etcdtest.StartCluster(t, 3)
	cli := etcdtest.NewClient(t, c.Endpoints)
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	register(t, svc, "a", "before", "2001:db8::1")
	c.Members[0].Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 20 {
		var err error
		for try := 0; try < 50; try++ {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = svc.Register(rctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: fmt.Sprintf("after%d", i), SIR: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 10)})})
			rcancel()
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("registration %d with one member down: %v", i, err)
		}
	}
	tasks, err := svc.Tasks(ctx)
	if err != nil || len(tasks) != 21 {
		t.Errorf("tasks = %d, %v; want 21", len(tasks), err)
	}
}

// ---- registration protocol over UDP ----

func listenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func TestRegistrationOverUDP(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys := regproto.KeyFile{
		1: {NVE: "mapsrv", Secret: []byte("mapsrv-secret-0123456789abcdef")},
		2: {NVE: "a", Secret: []byte("nve-a-secret-0123456789abcdef")},
		3: {NVE: "b", Secret: []byte("nve-b-secret-0123456789abcdef")},
		4: {NVE: "a", Secret: []byte("nve-a-second-key-0123456789ab")},
	}
	// NVE a listens for move notifications.
	aConn := listenUDP(t)
	notified := make(chan *regproto.Message, 4)
	aSrv := &regproto.Server{Conn: aConn, Keys: keys, KeyID: 2, Secret: keys[2].Secret, Handler: regproto.HandlerFunc(func(_ context.Context, _ netip.AddrPort, req *regproto.Message) *regproto.Message {
		notified <- req
		return req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
	})}
	notifier := &mapsrv.RegNotifier{KeyID: 1, Secret: keys[1].Secret, Keys: keys, Timeout: 200 * time.Millisecond}
	t.Cleanup(func() { notifier.Close() })
	svc := newService(t, cli, func(c *mapsrv.Config) { c.Notifier = notifier })
	setup(t, svc, map[string]netip.AddrPort{"a": addrOf(aConn)})

	srvConn := listenUDP(t)
	srv := &regproto.Server{Conn: srvConn, Keys: keys, KeyID: 1, Secret: keys[1].Secret, Handler: svc}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{srv.Run, aSrv.Run, svc.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	client := func(keyID uint32, secret []byte) *regproto.Client {
		c := &regproto.Client{Server: addrOf(srvConn), KeyID: keyID, Secret: secret, Keys: keys, ServerKeyID: 1, Timeout: time.Second, Retries: -1}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := client(2, keys[2].Secret), client(3, keys[3].Secret)
	sir := netip.MustParseAddr("2001:db8::1:0:0:5")
	req := &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{sir}, Lifetime: 15, MAC: ila.MAC{2, 0, 0, 0, 0, 5}}

	rctx := t.Context()
	rep, err := ca.Do(rctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Err() != nil || rep.Locator != locA || rep.Lifetime != 15 || rep.Domain != "prod" {
		t.Fatalf("registration reply: %+v", rep)
	}
	got, err := svc.Task(rctx, "t1", "vm1")
	if err != nil || got.NVE != "a" || got.Lifetime != ila.Duration(60*time.Second) {
		t.Fatalf("stored task after registration: %+v, %v", got, err)
	}

	refusals := []struct {
		name   string
		c      *regproto.Client
		req    *regproto.Message
		reason regproto.Reason
	}{
		{"claim on another nve's locator", ca, &regproto.Message{VMID: "x", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::9")}, Locator: locB, Lifetime: 10}, regproto.ReasonNotAuthorized},
		{"nve option not the key's owner", ca, &regproto.Message{NVE: "b", VMID: "x", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::9")}, Lifetime: 10}, regproto.ReasonNotAuthorized},
		{"unknown key", client(99, []byte("whatever-secret-0123456789")), req, 0}, // no answer
		{"wrong secret", client(2, []byte("not-the-secret-0123456789abc")), req, 0},
		{"unknown domain", ca, &regproto.Message{Domain: "nope", VMID: "x", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::9")}, Lifetime: 10}, regproto.ReasonUnknownDomain},
		{"neutral-map zero low bits", ca, &regproto.Message{VMID: "x", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1:0")}, Lifetime: 10}, regproto.ReasonInvalid},
		{"deregister another nve's task", cb, &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{sir}}, regproto.ReasonNotAuthorized},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := tc.c.Do(rctx, tc.req)
			if tc.reason == 0 { // unauthenticated: not answered
				if !errors.Is(err, regproto.ErrTimeout) {
					t.Errorf("reply %+v, %v; want none", rep, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if rep.Status.Accepted() || rep.Reason != tc.reason {
				t.Errorf("reply %s/%s, want rejected/%s", rep.Status, rep.Reason, tc.reason)
			}
		})
	}

	// Replay: the same datagram twice; the second is refused.
	raw := &regproto.Message{Type: regproto.TypeRequest, Seq: 77, Timestamp: time.Now(), KeyID: 4, VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{sir}, Lifetime: 15}
	b, err := raw.Marshal(keys[4].Secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := listenUDP(t)
	var reasons []regproto.Reason
	for range 2 {
		if _, err := rc.WriteToUDPAddrPort(b, addrOf(srvConn)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		rc.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("read reply: %v", err)
		}
		m, err := regproto.Parse(buf[:n], keys)
		if err != nil {
			t.Fatalf("parse reply: %v", err)
		}
		reasons = append(reasons, m.Reason)
	}
	if diff := cmp.Diff([]regproto.Reason{regproto.ReasonNone, regproto.ReasonReplay}, reasons); diff != "" {
		t.Errorf("reasons for a replayed datagram (-want +got):\n%s", diff)
	}
	if st := srv.Stats(); st.AuthFailures < 2 || st.Replays != 1 {
		t.Errorf("server stats: %+v", st)
	}

	// A claim by b of a's task is refused: b is not its standby (finding 3
	// of issue 17, reason 15).
	if rep, err := cb.Do(rctx, req); err != nil || rep.Reason != regproto.ReasonUnjustified {
		t.Fatalf("claim by b, not the standby: %+v, %v; want rejected/%s", rep, err, regproto.ReasonUnjustified)
	}
	// b registered as the task's standby (a prepared port): its own
	// word, still refused; once the orchestrator expects the task on b,
	// its claim is a hot move, and a is notified of b's locator.
	sb := *req
	sb.Role = regproto.RoleStandby
	if rep, err := cb.Do(rctx, &sb); err != nil || rep.Err() != nil {
		t.Fatalf("standby registration by b: %+v, %v", rep, err)
	}
	if rep, err := cb.Do(rctx, req); err != nil || rep.Reason != regproto.ReasonUnjustified {
		t.Fatalf("claim by b, the standby, not expected: %+v, %v; want rejected/%s", rep, err, regproto.ReasonUnjustified)
	}
	if _, err := svc.Expect(rctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b"}); err != nil {
		t.Fatalf("expect vm1 on b: %v", err)
	}
	rep, err = cb.Do(rctx, req)
	if err != nil || rep.Err() != nil || rep.Locator != locB {
		t.Fatalf("move by registration: %+v, %v", rep, err)
	}
	select {
	case n := <-notified:
		if !n.Notify || n.Locator != locB || n.VMID != "vm1" || n.NVE != "mapsrv" {
			t.Errorf("notification: %+v", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("previous nve a was not notified")
	}
	for deadline := time.Now().Add(5 * time.Second); svc.Stats().NotifySent != 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if st := svc.Stats(); st.NotifySent != 1 || st.MovesHot != 1 {
		t.Errorf("service stats: %+v", st)
	}

	// Lifetime 0 from the serving NVE deregisters.
	dereg := *req
	dereg.Lifetime = 0
	if rep, err := cb.Do(rctx, &dereg); err != nil || rep.Err() != nil {
		t.Fatalf("deregistration: %+v, %v", rep, err)
	}
	if _, err := svc.Task(rctx, "t1", "vm1"); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("task after deregistration: %v, want ErrNotFound", err)
	}
}

func TestWatchSurvivesEtcdRestart(t *testing.T) {
	dir := t.TempDir()
	if len(dir) > 80 {
		t.Skip("temp dir too long for a unix socket path")
	}
	srv := etcdtest.StartServer(t, dir)
	cli := etcdtest.NewClient(t, srv.Endpoints())
	svc := newService(t, cli, nil)
	setup(t, svc, nil)
	register(t, svc, "a", "vm1", "2001:db8::1")
	register(t, svc, "a", "vm2", "2001:db8::2")
	e := watch(t, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}), nil)
	e.waitFor(t, "synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 1 })

	// (Closing a member with a live watch stream takes etcd's request
	// timeout, about 7 s: it waits for the stream before stopping.)
	srv.Close()
	time.Sleep(300 * time.Millisecond) // the watcher sees etcd gone and retries
	srv = etcdtest.StartServer(t, dir)
	t.Cleanup(func() { cli.Close() }) // before the new server's close
	other := etcdtest.NewClient(t, srv.Endpoints())
	if _, err := other.Delete(t.Context(), mapsrv.TaskKey("prod", 2)); err != nil {
		t.Fatal(err)
	}
	evs := e.waitFor(t, "delete of vm2 after the restart", func(evs []ila.Event) bool { return count(evs, ila.EventTaskDelete) == 1 })
	last := evs[len(evs)-1]
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == ila.EventTaskDelete {
			last = evs[i]
		}
	}
	if last.Task.Name != "vm2" {
		t.Errorf("deleted %s, want vm2", last.Task.Name)
	}
}
