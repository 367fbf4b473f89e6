package bgp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator/bgp"
)

var (
	torAddr  = netip.MustParseAddr("127.0.0.1")
	hostAddr = netip.MustParseAddr("127.0.0.2")
	nextHop  = netip.MustParseAddr("2001:db8:ff::1")
	loc1     = netip.MustParsePrefix("2001:db8:0:1::/64")
	loc2     = netip.MustParsePrefix("2001:db8:0:2::/64")
)

var eq = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// running is a speaker in its own goroutine.
type running struct {
	sp   *bgp.Speaker
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, cfg bgp.Config) *running {
	t.Helper()
	sp, err := bgp.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{sp: sp, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- sp.Run(ctx) }()
	t.Cleanup(r.end)
	return r
}

// end stops the speaker and waits for Run (idempotent).
func (r *running) end() {
	r.stop()
	if err, ok := <-r.done; ok {
		close(r.done)
		_ = err
	}
}

// torConfig is the ToR's: it listens on port, the host is its passive
// neighbour.
func torConfig(port uint16, hostASN uint32) bgp.Config {
	return bgp.Config{
		ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.1"), NextHop: netip.MustParseAddr("2001:db8:ff::fe"),
		ListenPort: port, ListenAddress: torAddr,
		Peers:    []bgp.Peer{{Address: hostAddr, ASN: hostASN, Passive: true}},
		HoldTime: ila.Duration(3 * time.Second), RestartTime: ila.Duration(30 * time.Second),
	}
}

func hostConfig(port uint16) bgp.Config {
	return bgp.Config{
		ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.2"), NextHop: nextHop, LocalAddress: hostAddr,
		Peers:    []bgp.Peer{{Address: torAddr, ASN: 65000, Port: port}},
		HoldTime: ila.Duration(3 * time.Second), RestartTime: ila.Duration(30 * time.Second),
	}
}

// waitRoutes waits until the ToR holds exactly want from the host.
func waitRoutes(t *testing.T, tr *torProc, want map[netip.Prefix]netip.Addr) {
	t.Helper()
	var got map[netip.Prefix]netip.Addr
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, _ = tr.now(); cmp.Equal(got, want, eq) {
			return
		}
	}
	t.Fatalf("routes at the ToR from the host (-got +want):\n%s", cmp.Diff(got, want, eq))
}

func waitEstablished(t *testing.T, r *running) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st := r.sp.State(context.Background()); len(st.Peers) > 0 && st.Peers[0].State == "established" {
			return
		}
	}
	t.Fatalf("session not established: %+v", r.sp.State(context.Background()))
}

// TestAnnounceWithdraw: the host announces its locators only while ready
// and not drained, with its underlay address as next hop.
func TestAnnounceWithdraw(t *testing.T) {
	port := freePort(t)
	tr := startToR(t, torConfig(port, 65000))
	h := start(t, hostConfig(port))
	if err := h.sp.SetPrefixes([]netip.Prefix{loc2, loc1, netip.MustParsePrefix("2001:db8:0:1::1/64")}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, h)
	// Not ready yet: nothing is announced. The session is up, so a route
	// sent would have arrived by the time a later one does; check again
	// after the first announcement below.
	if got, _ := tr.now(); len(got) != 0 {
		t.Fatalf("before ready: routes %v; want none", got)
	}
	h.sp.SetReady(true)
	waitRoutes(t, tr, map[netip.Prefix]netip.Addr{loc1: nextHop, loc2: nextHop})

	h.sp.SetReady(false)
	waitRoutes(t, tr, map[netip.Prefix]netip.Addr{})
	h.sp.SetReady(true)
	waitRoutes(t, tr, map[netip.Prefix]netip.Addr{loc1: nextHop, loc2: nextHop})

	h.sp.SetDrained(true)
	waitRoutes(t, tr, map[netip.Prefix]netip.Addr{})
	st := h.sp.State(context.Background())
	if !st.Drained || len(st.Announced) != 0 || !cmp.Equal(st.Prefixes, []netip.Prefix{loc1, loc2}, eq) {
		t.Errorf("drained state: %+v", st)
	}
	h.sp.SetDrained(false)
	if err := h.sp.SetPrefixes([]netip.Prefix{loc2}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, tr, map[netip.Prefix]netip.Addr{loc2: nextHop})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st := h.sp.State(context.Background())
		if st.Peers[0].GracefulRestart {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer state %+v: want graceful restart negotiated", st.Peers[0])
		}
	}
}

// TestGracefulRestart: a speaker that stops without StopHard (ilad
// restarting, datapath pinned) leaves its routes at the ToR; its
// successor (Restarting) takes them over. StopHard withdraws at once.
func TestGracefulRestart(t *testing.T) {
	port := freePort(t)
	tr := startToR(t, torConfig(port, 65000))
	h := start(t, hostConfig(port))
	_ = h.sp.SetPrefixes([]netip.Prefix{loc1})
	h.sp.SetReady(true)
	want := map[netip.Prefix]netip.Addr{loc1: nextHop}
	waitRoutes(t, tr, want)

	h.end()
	// The session is down and the ToR keeps the route (stale) well past
	// the hold time (3s).
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, _ := tr.now(); !cmp.Equal(got, want, eq) {
			t.Fatalf("after a graceful stop: routes at the ToR %v; want %v kept", got, want)
		}
	}
	if _, state := tr.now(); state == "established" {
		t.Fatalf("the host stopped but the ToR's session is %s", state)
	}

	cfg := hostConfig(port)
	cfg.Restarting = true
	h2 := start(t, cfg)
	_ = h2.sp.SetPrefixes([]netip.Prefix{loc1})
	h2.sp.SetReady(true)
	waitEstablished(t, h2)
	waitRoutes(t, tr, want)

	h2.sp.StopHard()
	h2.end()
	waitRoutes(t, tr, map[netip.Prefix]netip.Addr{})
}

// TestWrongPeerASN: a host configured with the wrong AS for its ToR
// never gets a session and announces nothing; the refusal is logged.
func TestWrongPeerASN(t *testing.T) {
	port := freePort(t)
	tr := startToR(t, torConfig(port, 65000))
	cfg := hostConfig(port)
	cfg.Peers[0].ASN = 65001
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := start(t, cfg)
	_ = h.sp.SetPrefixes([]netip.Prefix{loc1})
	h.sp.SetReady(true)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st := h.sp.State(context.Background()); st.Peers[0].State == "established" {
			t.Fatalf("session with a wrong peer AS established: %+v", st)
		}
		if got, _ := tr.now(); len(got) != 0 {
			t.Fatalf("ToR got %v from a host with a wrong AS", got)
		}
	}
	if st := h.sp.State(context.Background()); st.Peers[0].Failures == 0 || !strings.Contains(logs.String(), "as number mismatch") {
		t.Errorf("wrong AS: %d failures counted, log:\n%s\nwant the mismatch counted and logged", st.Peers[0].Failures, logs.String())
	}
}

// TestGarbagePeer: a "peer" that answers with garbage is refused and the
// speaker keeps running (and keeps trying).
func TestGarbagePeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns sync.WaitGroup
	accepted := make(chan struct{}, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				accepted <- struct{}{}
				_, _ = c.Write(bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64))
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Read(make([]byte, 4096))
			}()
		}
	}()
	cfg := hostConfig(uint16(l.Addr().(*net.TCPAddr).Port))
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := start(t, cfg)
	_ = h.sp.SetPrefixes([]netip.Prefix{loc1})
	h.sp.SetReady(true)
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the speaker never connected")
	}
	time.Sleep(500 * time.Millisecond)
	if st := h.sp.State(context.Background()); !st.Running || st.Peers[0].State == "established" {
		t.Errorf("after garbage: %+v; want running, not established", st)
	}
	h.end()
	l.Close()
	conns.Wait()
	if st := h.sp.State(context.Background()); st.Peers[0].Failures == 0 || !strings.Contains(logs.String(), "bgp: session failed") {
		t.Errorf("garbage: %d failures counted, log:\n%s\nwant a failure counted and logged", st.Peers[0].Failures, logs.String())
	}
}

func TestConfigCheck(t *testing.T) {
	good := func() bgp.Config {
		return bgp.Config{ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.2"), NextHop: nextHop,
			Peers: []bgp.Peer{{Address: torAddr, ASN: 65000}}}
	}
	for _, tc := range []struct {
		name string
		mod  func(*bgp.Config)
		want string
	}{
		{"asn zero", func(c *bgp.Config) { c.ASN = 0 }, "local asn 0"},
		{"as_trans", func(c *bgp.Config) { c.ASN = 23456 }, "reserved"},
		{"peer asn reserved", func(c *bgp.Config) { c.Peers[0].ASN = 65535 }, "asn 65535"},
		{"router id v6", func(c *bgp.Config) { c.RouterID = nextHop }, "router id"},
		{"router id missing", func(c *bgp.Config) { c.RouterID = netip.Addr{} }, "router id"},
		{"next hop v4", func(c *bgp.Config) { c.NextHop = torAddr }, "next hop"},
		{"next hop link-local", func(c *bgp.Config) { c.NextHop = netip.MustParseAddr("fe80::1") }, "next hop"},
		{"no peers", func(c *bgp.Config) { c.Peers = nil }, "no peers"},
		{"peer unspecified", func(c *bgp.Config) { c.Peers[0].Address = netip.IPv6Unspecified() }, "unicast"},
		{"peer twice", func(c *bgp.Config) { c.Peers = append(c.Peers, c.Peers[0]) }, "twice"},
		{"hold short", func(c *bgp.Config) { c.HoldTime = ila.Duration(time.Second) }, "hold time"},
		{"hold fraction", func(c *bgp.Config) { c.HoldTime = ila.Duration(3500 * time.Millisecond) }, "hold time"},
		{"restart long", func(c *bgp.Config) { c.RestartTime = ila.Duration(2 * time.Hour) }, "restart time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(&c)
			_, err := bgp.New(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error containing %q", err, tc.want)
			}
		})
	}
	c := good()
	if _, err := bgp.New(c); err != nil {
		t.Fatalf("good config: %v", err)
	}
	sp, _ := bgp.New(good())
	if err := sp.SetPrefixes([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); err == nil {
		t.Errorf("SetPrefixes took an IPv4 prefix")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
