//go:build linux

package main

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// TestNotifyHandler: ilad takes the in-flight time and the move mode from
// mapsrv's notification (lifetime in 4 s units; cold or lifetime 0: no
// redirect), and refuses a notification for a task it does not hold with
// reason 5, unknown task (docs/registration.md section 7.4).
func TestNotifyHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sir := ila.SIRPrefix(0x3333_0000_0000_0001)
		dom := ila.Domain{Name: "prod", SIR: sir, Csum: ila.CsumNeutralMap}
		locA, locB := ila.Locator(0x2001_0000_0000_000a), ila.Locator(0x2001_0000_0000_000b)
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		a, err := locator.New(locator.Config{Node: "nve-a", Locators: []locator.LocatorSpec{{Locator: locA}}, Datapath: dp, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		defer func() { cancel(); <-done }()
		synctest.Wait()
		for i, id := range []ila.Identifier{0x1001, 0x1002} {
			spec := locator.TaskSpec{Name: []string{"hot", "cold"}[i], Iface: []string{"veth-h", "veth-c"}[i], SIR: sir.Addr(id)}
			if err := a.Attach(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
		}
		h := notifyHandler(a, "mapsrv", slog.New(slog.DiscardHandler))
		note := func(id ila.Identifier, mode regproto.MoveMode, units uint16) *regproto.Message {
			req := &regproto.Message{Type: regproto.TypeRequest, Notify: true, NVE: "mapsrv", VMID: "x", Locator: locB, Addrs: []netip.Addr{sir.Addr(id)}, Lifetime: units, Mode: mode}
			return h.Handle(t.Context(), netip.MustParseAddrPort("[::1]:7000"), req)
		}
		if rep := note(0x1001, regproto.MoveHot, 3); rep.Status != regproto.StatusAccepted {
			t.Fatalf("hot notification: %s/%s", rep.Status, rep.Reason)
		}
		inflight := dp.InFlightEntries()
		if got := inflight[locatortest.Key{SIR: sir, ID: 0x1001}]; !got.Until.Equal(time.Now().Add(12 * time.Second)) {
			t.Errorf("hot: in-flight until %v, want 12 s (3 units) from now", got.Until)
		}
		if rep := note(0x1002, regproto.MoveCold, 3); rep.Status != regproto.StatusAccepted {
			t.Fatalf("cold notification: %s/%s", rep.Status, rep.Reason)
		}
		if _, ok := dp.InFlightEntries()[locatortest.Key{SIR: sir, ID: 0x1002}]; ok {
			t.Error("cold: in-flight entry installed, want none (nothing in flight after a suspension)")
		}
		if rep := note(0x1003, regproto.MoveHot, 3); rep.Status.Accepted() || rep.Reason != regproto.ReasonUnknownTask {
			t.Errorf("notification for an unknown task: %s/%s, want rejected/unknown task", rep.Status, rep.Reason)
		}
	})
}
