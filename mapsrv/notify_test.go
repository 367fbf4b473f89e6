package mapsrv_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// TestNotificationModeAndLifetime: mapsrv's notification to the previous
// NVE carries the move's mode and the in-flight time it recorded for that
// NVE: a hot move its remaining in-flight time, a cold move's completion
// mode cold and lifetime 0 (drop now: nothing is in flight).
func TestNotificationModeAndLifetime(t *testing.T) {
	keys := regproto.KeyFile{
		1: {NVE: "mapsrv", Secret: []byte("mapsrv-secret-0123456789abcdef")},
		2: {NVE: "a", Secret: []byte("nve-a-secret-0123456789abcdef")},
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("udp on ::1: %v", err)
	}
	got := make(chan *regproto.Message, 8)
	srv := &regproto.Server{Conn: conn, Keys: keys, KeyID: 2, Secret: keys[2].Secret, Handler: regproto.HandlerFunc(func(_ context.Context, _ netip.AddrPort, req *regproto.Message) *regproto.Message {
		got <- req
		return req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
	})}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); conn.Close() })
	rn := &mapsrv.RegNotifier{KeyID: 1, Secret: keys[1].Secret, Keys: keys, Timeout: time.Second}
	t.Cleanup(func() { rn.Close() })
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()

	// The service decides what to notify; the recorder keeps it.
	f := newFixture(t, func(c *mapsrv.Config) { c.InFlight = 30 * time.Second; c.Now = time.Now })
	f.register(t, "a", "hot", "2001:db8::1")
	f.register(t, "a", "cold", "2001:db8::2")
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "hot", To: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "cold", To: "b", Mode: ila.MoveCold}); err != nil {
		t.Fatal(err)
	}
	f.register(t, "b", "cold", "2001:db8::2") // arrives: the move completes
	if err := f.svc.Run(runFor(t, 300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	notes := f.notes.get()
	var modes []string
	for _, n := range notes {
		modes = append(modes, n.Task.Name+" "+n.NVE+" "+n.Mode.String())
	}
	if diff := cmp.Diff([]string{"hot a hot", "cold a cold"}, modes); diff != "" {
		t.Fatalf("notifications (-want +got):\n%s", diff)
	}
	type wire struct {
		VMID     string
		Mode     regproto.MoveMode
		Lifetime uint16
	}
	var wires []wire
	for _, n := range notes {
		n.To = to
		if err := rn.Notify(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		m := <-got
		wires = append(wires, wire{m.VMID, m.Mode, m.Lifetime})
	}
	// 30 s in flight, a little spent: 7 whole units of 4 s.
	want := []wire{{"hot", regproto.MoveHot, 7}, {"cold", regproto.MoveCold, 0}}
	if diff := cmp.Diff(want, wires); diff != "" {
		t.Errorf("notification messages (-want +got):\n%s", diff)
	}
}

// runFor returns a context that ends after d (for Service.Run).
func runFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
