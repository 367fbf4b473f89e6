package datapath

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestMonitorEvents: with the monitor on, a refused source, a miss, a
// drop of an unknown identifier and an in-flight redirect each report one
// event with its reason and addresses; a packet that hits reports none,
// and with the monitor off nothing is reported.
func TestMonitorEvents(t *testing.T) {
	tb := newTestbed(t, Config{})
	e := envFor(ila.CsumNeutralMap)
	udp := func(s, d netip.Addr) []byte {
		return testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: s, Dst: d, Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}.Frame()
	}
	fromFabric := func(id ila.Identifier) []byte {
		return testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: e.sir(idRemote), Dst: e.ila(t, id, e.own), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP), HopLimit: 60}.Frame()
	}
	next := func() (Event, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		return tb.d.ReadEvent(ctx)
	}

	// Off: a drop reports nothing.
	tb.run(t, tb.d.objs.IlaTask, tb.task, udp(e.sir(idRemote), e.sir(idLocal)))
	if ev, err := next(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("monitor off: %+v, %v", ev, err)
	}

	must(t, tb.d.SetMonitor(true))
	type sent struct {
		name    string
		prog    func() uint32
		want    *Event // nil: none
		ingress int
	}
	for _, s := range []sent{
		{"spoofed source", func() uint32 {
			a, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, udp(e.sir(idRemote), e.sir(idLocal)))
			return a
		}, &Event{Type: EventDrop, Reason: "drop_spoofed_source", Ifindex: tb.task, Src: e.sir(idRemote), Dst: e.sir(idLocal)}, 0},
		{"hit", func() uint32 {
			a, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, udp(e.sir(idLocal), e.sir(idRemote)))
			return a
		}, nil, 0},
		{"miss", func() uint32 {
			a, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, udp(e.sir(idLocal), e.sir(idMissing)))
			return a
		}, &Event{Type: EventMiss, Reason: "pass_miss", Ifindex: tb.task, Src: e.sir(idLocal), Dst: e.sir(idMissing)}, 0},
		{"in flight", func() uint32 {
			a, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, fromFabric(idMoved))
			return a
		}, &Event{Type: EventRedirect, Reason: "inflight_forwarded", Ifindex: tb.uplink, Src: e.sir(idRemote), Dst: e.sir(idMoved), Locator: e.newHome}, 0},
		{"unknown identifier", func() uint32 {
			a, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, fromFabric(idMissing))
			return a
		}, &Event{Type: EventDrop, Reason: "drop_unknown", Ifindex: tb.uplink, Src: e.sir(idRemote), Dst: e.sir(idMissing)}, 0},
	} {
		start := time.Now()
		s.prog()
		ev, err := next()
		if s.want == nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: event %+v, %v; want none", s.name, ev, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		if diff := cmp.Diff(*s.want, ev, cmpopts.IgnoreFields(Event{}, "Time", "Len"), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s: event (-want +got)\n%s", s.name, diff)
		}
		if ev.Len == 0 || ev.Time.Before(start.Add(-time.Second)) || ev.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: len %d time %v (sent at %v)", s.name, ev.Len, ev.Time, start)
		}
	}

	// Off again.
	must(t, tb.d.SetMonitor(false))
	tb.run(t, tb.d.objs.IlaTask, tb.task, udp(e.sir(idRemote), e.sir(idLocal)))
	if ev, err := next(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("monitor off again: %+v, %v", ev, err)
	}
	if lost, err := tb.d.MonitorLost(); err != nil || lost != 0 {
		t.Errorf("lost %d, %v", lost, err)
	}
}

// TestMonitorRateLimit: past ILA_MON_PER_SEC events per CPU in a second
// the rest are counted lost, not reported.
func TestMonitorRateLimit(t *testing.T) {
	tb := newTestbed(t, Config{})
	e := envFor(ila.CsumNeutralMap)
	must(t, tb.d.SetMonitor(true))
	frame := testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: e.sir(idRemote), Dst: e.sir(idLocal), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}.Frame()
	limit := int(xlatIlaMonTypeILA_MON_PER_SEC)
	out := make([]byte, len(frame)+256)
	// One test run, repeated in the kernel: one CPU, well within a second.
	must(t, tb.ns.Do(func() error {
		_, err := tb.d.objs.IlaTask.Run(&ebpf.RunOptions{Data: frame, DataOut: out, Context: skbCtx(tb.task), Repeat: uint32(limit + 100)})
		return err
	}))
	lost, err := tb.d.MonitorLost()
	if err != nil {
		t.Fatal(err)
	}
	if lost < 100 {
		t.Errorf("lost %d events, want at least 100 of %d", lost, limit+100)
	}
}
