package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestTenantIsolation is finding 6 of issue 17: a task reaches the tasks of
// its own tenant; another tenant's only while a policy allows the pair, on
// the NVE (remote and local destinations) and on the ILA router (packets
// that missed at their NVE). A port bound to an IPv4 address sends IPv4
// only from it.
func TestTenantIsolation(t *testing.T) {
	tb := newTestbed(t, Config{Router: true})
	e := envFor(ila.CsumModes[0]) // the domain whose addresses own the port slots
	red, blue := ila.TenantOf("red"), ila.TenantOf("blue")
	must(t, tb.d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idLocal, Ifindex: tb.task, Tenant: red}))
	must(t, tb.d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idLocalMAC, Ifindex: tb.task2, MAC: taskMAC, Tenant: blue}))
	mapping := func(id ila.Identifier, loc ila.Locator, tn ila.TenantID) {
		t.Helper()
		must(t, tb.d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: id, Locator: loc, Csum: e.mode, Tenant: tn}))
	}
	mapping(idLocal, e.own, red)
	mapping(idLocalMAC, e.own, blue)
	mapping(idRemote, e.remote, blue)
	udp := func(src, dst ila.Identifier) []byte {
		return testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: e.sir(src), Dst: e.sir(dst), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP), HopLimit: 64}.Frame()
	}
	type step struct {
		name     string
		allow    bool // the red<->blue policy is in place
		prog     string
		ingress  int
		frame    []byte
		act      uint32
		counters map[string]uint64
	}
	steps := []step{
		{"red to remote blue", false, "task", tb.task, udp(idLocal, idRemote), actShot, map[string]uint64{"rx_task": 1, "drop_tenant": 1}},
		{"red to local blue", false, "task", tb.task, udp(idLocal, idLocalMAC), actShot, map[string]uint64{"rx_task": 1, "drop_tenant": 1}},
		{"blue to local red", false, "task", tb.task2, udp(idLocalMAC, idLocal), actShot, map[string]uint64{"rx_task": 1, "drop_tenant": 1}},
		{"blue to remote blue", false, "task", tb.task2, udp(idLocalMAC, idRemote), actRedirect, map[string]uint64{"rx_task": 1, "translated": 1, "fib_redirect": 1}},
		{"router: red to blue", false, "router", tb.uplink, udp(idLocal, idRemote), actShot, map[string]uint64{"rx_router": 1, "drop_tenant": 1}},
		{"policy: red to remote blue", true, "task", tb.task, udp(idLocal, idRemote), actRedirect, map[string]uint64{"rx_task": 1, "translated": 1, "fib_redirect": 1}},
		{"policy: red to local blue", true, "task", tb.task, udp(idLocal, idLocalMAC), actRedirect, map[string]uint64{"rx_task": 1, "local_delivered": 1}},
		{"policy: router red to blue", true, "router", tb.uplink, udp(idLocal, idRemote), actRedirect, map[string]uint64{"rx_router": 1, "router_translated": 1, "fib_redirect": 1}},
		{"policy removed: red to remote blue", false, "task", tb.task, udp(idLocal, idRemote), actShot, map[string]uint64{"rx_task": 1, "drop_tenant": 1}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.allow {
				must(t, tb.d.AllowTenants(red, blue))
			} else {
				must(t, tb.d.DisallowTenants(blue, red))
			}
			prog := tb.d.objs.IlaTask
			if s.prog == "router" {
				prog = tb.d.objs.IlaRouter
			}
			before := tb.stats(t)
			if act, _ := tb.run(t, prog, s.ingress, s.frame); act != s.act {
				t.Errorf("action %d, want %d", act, s.act)
			}
			if diff := cmp.Diff(s.counters, delta(before, tb.stats(t))); diff != "" {
				t.Errorf("counters (-want +got)\n%s", diff)
			}
		})
	}
	must(t, tb.d.AllowTenants(red, blue))
	got, err := tb.d.TenantPolicies()
	must(t, err)
	if want := [][2]ila.TenantID{{min(red, blue), max(red, blue)}}; !cmp.Equal(got, want) {
		t.Errorf("policies %v, want %v", got, want)
	}
	if err := tb.d.AllowTenants(red, red); err == nil {
		t.Error("a policy of a tenant with itself accepted")
	}

	t.Run("ipv4 source validation", func(t *testing.T) {
		must(t, tb.d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idLocal, Ifindex: tb.task, Tenant: red, IPv4: netip.MustParseAddr("10.0.0.1")}))
		for _, tc := range []struct {
			src      string
			act      uint32
			counters map[string]uint64
		}{
			{"10.0.0.1", actOK, map[string]uint64{"rx_task": 1, "pass_non_ipv6": 1}},
			{"10.0.0.9", actShot, map[string]uint64{"rx_task": 1, "drop_spoofed_ipv4": 1}},
		} {
			before := tb.stats(t)
			if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, ipv4Frame(netip.MustParseAddr(tc.src), netip.MustParseAddr("10.0.0.2"))); act != tc.act {
				t.Errorf("from %s: action %d, want %d", tc.src, act, tc.act)
			}
			if diff := cmp.Diff(tc.counters, delta(before, tb.stats(t))); diff != "" {
				t.Errorf("from %s: counters (-want +got)\n%s", tc.src, diff)
			}
		}
		// A port without an IPv4 address is not checked.
		before := tb.stats(t)
		if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task2, ipv4Frame(netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.2"))); act != actOK {
			t.Errorf("port without ipv4: action %d, want pass", act)
		}
		if diff := cmp.Diff(map[string]uint64{"rx_task": 1, "pass_non_ipv6": 1}, delta(before, tb.stats(t))); diff != "" {
			t.Errorf("port without ipv4: counters (-want +got)\n%s", diff)
		}
		// Deleting the local entry clears the port's tenant and address.
		must(t, tb.d.DeleteLocal(e.dom.SIR, idLocal))
		if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, ipv4Frame(netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.2"))); act != actOK {
			t.Errorf("after delete: action %d, want pass", act)
		}
	})
}

// ipv4Frame is an Ethernet frame with a minimal IPv4/UDP packet.
func ipv4Frame(src, dst netip.Addr) []byte {
	b := make([]byte, 14+20+8)
	gw := ila.GatewayMAC()
	copy(b[0:6], gw[:])
	copy(b[6:12], taskMAC[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 28)
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(ip[20:], 1000)
	binary.BigEndian.PutUint16(ip[22:], 2000)
	binary.BigEndian.PutUint16(ip[24:], 8)
	return b
}
