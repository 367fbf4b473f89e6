package dnsbridge

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// wire renders records as their uncompressed wire form (what a client
// receives), in order.
func wire(t *testing.T, rrs []dns.RR) []string {
	t.Helper()
	out := make([]string, 0, len(rrs))
	for _, r := range rrs {
		buf := make([]byte, 2*dns.Len(r)+64)
		n, err := dns.PackRR(r, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("%v does not pack: %v", r, err)
		}
		out = append(out, fmt.Sprintf("%x", buf[:n]))
	}
	return out
}

// owners lists the owner name and type of every record, in order.
func owners(rrs []dns.RR) []string {
	out := make([]string, len(rrs))
	for i, r := range rrs {
		out[i] = r.Header().Name + " " + dns.TypeToString[r.Header().Rrtype]
	}
	return out
}

func sortedWire(t *testing.T, rrs []dns.RR) []string {
	out := wire(t, rrs)
	slices.Sort(out)
	return out
}

// randomEvents returns a random history of a store: tasks with odd and
// valid names, IPv4 tenants (shared addresses too), two domains, moves,
// suspensions, deletes, domain changes, NVEs, and a re-list.
func randomEvents(t *testing.T, rnd *rand.Rand, n int) []ila.Event {
	names := []string{"web", "Web", "api-1", "x_y", "has.dot", "id", "", "nve", strings.Repeat("a", 63), strings.Repeat("b", 64), "ümlaut", `q"uote`, "back\\slash"}
	tenants := []string{"blue", "Blue", "red", "id", "nve", "has space", ""}
	nves := []string{"nve1", "NVE2", "n-3", "bad name", ""}
	v4s := []string{"", "", "10.1.2.3", "10.1.2.4", "10.9.0.1", "192.0.2.200"}
	domains := []ila.Domain{
		testDomain,
		{Name: "dc2", SIR: ila.SIRPrefix(0x2001_0db8_0002_0000), Csum: ila.CsumNoAction},
		{Name: "dc1", SIR: ila.SIRPrefix(0x2001_0db8_0003_0000), Csum: ila.CsumNeutralMap},
		{Name: "odd\x00dom", SIR: ila.SIRPrefix(0x2001_0db8_0004_0000), Csum: ila.CsumNeutralMap},
	}
	var tasks []ila.Task
	var evs []ila.Event
	rev := int64(1)
	for range n {
		rev++
		switch k := rnd.IntN(20); {
		case k < 8 || len(tasks) == 0: // a new task
			id := mustLUID(t, uint64(0x100+rnd.IntN(4000)))
			d := domains[rnd.IntN(2)]
			if rnd.IntN(8) == 0 {
				d = domains[3]
			}
			tk := ila.Task{
				Domain: d.Name, Name: names[rnd.IntN(len(names))], Tenant: tenants[rnd.IntN(len(tenants))],
				Identifier: id, Locator: locA + ila.Locator(rnd.IntN(3)), NVE: nves[rnd.IntN(len(nves))],
				Version: 1, State: ila.StateActive,
			}
			switch rnd.IntN(4) {
			case 0: // no SIR: the domain's is used
			case 1:
				tk.SIR = netip.AddrFrom16(d.SIR.Addr(id).As16()) // IPv4-mapped form is not used: plain
			default:
				tk.SIR = d.SIR.Addr(id)
			}
			if v := v4s[rnd.IntN(len(v4s))]; v != "" {
				tk.IPv4 = netip.MustParseAddr(v)
			}
			if rnd.IntN(6) == 0 {
				tk.IPv4 = netip.AddrFrom16(netip.MustParseAddr("10.1.2.9").As16()) // v4-in-v6
			}
			tasks = append(tasks, tk)
			evs = append(evs, upsert(rev, tk))
		case k < 12: // a move
			i := rnd.IntN(len(tasks))
			tasks[i].Locator = locA + ila.Locator(rnd.IntN(3))
			tasks[i].NVE = nves[rnd.IntN(len(nves))]
			tasks[i].Version++
			tasks[i].State = ila.StateActive
			evs = append(evs, upsert(rev, tasks[i]))
		case k < 13: // a suspension
			i := rnd.IntN(len(tasks))
			tasks[i].State = ila.StateSuspended
			tasks[i].Version++
			evs = append(evs, upsert(rev, tasks[i]))
		case k < 15: // a delete
			i := rnd.IntN(len(tasks))
			tk := tasks[i]
			tasks = slices.Delete(tasks, i, i+1)
			evs = append(evs, ila.Event{Type: ila.EventTaskDelete, Revision: rev, Task: &tk})
		case k < 16: // a domain upsert or delete
			d := domains[rnd.IntN(len(domains))]
			if rnd.IntN(4) == 0 {
				evs = append(evs, ila.Event{Type: ila.EventDomainDelete, Revision: rev, Domain: &d})
			} else {
				evs = append(evs, upsert(rev, d))
			}
		case k < 18: // an NVE
			nv := ila.NVE{Name: nves[rnd.IntN(len(nves))], Locators: []ila.Locator{locA + ila.Locator(rnd.IntN(3))}}
			if rnd.IntN(2) == 0 {
				nv.Underlay = netip.MustParseAddr("2001:db8:ff::1")
			} else {
				nv.Underlay = netip.MustParseAddr("192.0.2.7")
			}
			if rnd.IntN(4) == 0 {
				evs = append(evs, ila.Event{Type: ila.EventNVEDelete, Revision: rev, NVE: &nv})
			} else {
				evs = append(evs, upsert(rev, nv))
			}
		case k < 19: // several changes in one transaction
			for range 3 {
				i := rnd.IntN(len(tasks))
				tasks[i].Version++
				evs = append(evs, upsert(rev, tasks[i]))
			}
		default:
			evs = append(evs, synced(rev))
		}
	}
	return evs
}

// TestCompactZoneMatchesReference applies random store histories to the
// compact zone and to the zone as it was (records as dns.RR objects,
// zone_ref_test.go) and checks that every answer, negative answer, AXFR,
// IXFR and history delta is the same on the wire.
func TestCompactZoneMatchesReference(t *testing.T) {
	cfgs := []Config{
		{},
		{
			ReverseV4: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			ReverseV6: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")},
			NS:        []string{"ns1.ila.internal.", "ns.example.net."},
			NSAddrs:   []netip.Addr{netip.MustParseAddr("2001:db8:53::1"), netip.MustParseAddr("192.0.2.53")},
			History:   5,
		},
	}
	for ci, cfg := range cfgs {
		cfg, err := cfg.validate()
		if err != nil {
			t.Fatal(err)
		}
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("cfg%d/seed%d", ci, seed), func(t *testing.T) {
				rnd := rand.New(rand.NewPCG(seed, 19))
				z, ref := newZone(cfg), newRefZone(cfg)
				evs := randomEvents(t, rnd, 300)
				relist := len(evs) / 2
				for i, ev := range evs {
					if i == relist {
						// A fresh watch lists a part of the store.
						z.beginList()
						ref.beginList()
					}
					got, want := z.apply(ev), ref.apply(ev)
					if got != want {
						t.Fatalf("event %d (%v): changed = %v, reference %v", i, ev.Type, got, want)
					}
					if i%50 == 0 || i == len(evs)-1 {
						compareZones(t, z, ref, fmt.Sprintf("after event %d", i))
						// The zones to NOTIFY secondaries about.
						if diff := cmp.Diff(ref.takeDirty(), z.takeDirty()); diff != "" {
							t.Fatalf("after event %d: changed zones (-reference +compact):\n%s", i, diff)
						}
					}
				}
			})
		}
	}
}

func compareZones(t *testing.T, z *zone, ref *refZone, when string) {
	t.Helper()
	gs, gser := z.state()
	ws, wser := ref.state()
	if gs != ws || gser != wser {
		t.Fatalf("%s: state %v %d, reference %v %d", when, gs, gser, ws, wser)
	}
	if diff := cmp.Diff(ref.served(), z.served()); diff != "" {
		t.Fatalf("%s: served zones (-ref +compact):\n%s", when, diff)
	}
	if z.nodes.len() != len(ref.nodes) || z.ents.len() != len(ref.ents) || z.badNames != ref.badNames {
		t.Fatalf("%s: %d names, %d non-terminals, %d bad names; reference %d, %d, %d", when,
			z.nodes.len(), z.ents.len(), z.badNames, len(ref.nodes), len(ref.ents), ref.badNames)
	}
	qnames := []string{"nope.ila.internal.", "x.web.blue.ila.internal.", "example.com."}
	for name := range ref.nodes {
		qnames = append(qnames, name, "x."+name)
	}
	for name := range ref.ents {
		qnames = append(qnames, name)
	}
	qnames = append(qnames, ref.served()...)
	for _, qn := range qnames {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeTXT, dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeANY} {
			got, want := z.lookup(qn, qt), ref.lookup(qn, qt)
			if got.zone != want.zone || got.rcode != want.rcode {
				t.Fatalf("%s: %s %s: zone, rcode = %q, %d; reference %q, %d", when, qn, dns.TypeToString[qt], got.zone, got.rcode, want.zone, want.rcode)
			}
			// The order of an RRset's records is the order their owners
			// were applied, which a domain change makes the order of a
			// map in the reference: compare them as sets.
			if diff := cmp.Diff(sortedWire(t, want.answer), sortedWire(t, got.answer)); diff != "" {
				t.Fatalf("%s: %s %s answer (-ref +compact):\n%s", when, qn, dns.TypeToString[qt], diff)
			}
			if diff := cmp.Diff(wire(t, want.ns), wire(t, got.ns)); diff != "" {
				t.Fatalf("%s: %s %s authority (-ref +compact):\n%s", when, qn, dns.TypeToString[qt], diff)
			}
		}
	}
	if len(z.history) != len(ref.history) {
		t.Fatalf("%s: %d deltas, reference %d", when, len(z.history), len(ref.history))
	}
	for i, d := range ref.history {
		g := z.history[i]
		if g.rev != d.rev || g.from != d.from || g.to != d.to {
			t.Fatalf("%s: delta %d: %d %d->%d, reference %d %d->%d", when, i, g.rev, g.from, g.to, d.rev, d.from, d.to)
		}
		if diff := cmp.Diff(sortedWire(t, d.del), sortedWire(t, g.del)); diff != "" {
			t.Fatalf("%s: delta %d removed (-ref +compact):\n%s", when, i, diff)
		}
		if diff := cmp.Diff(sortedWire(t, d.add), sortedWire(t, g.add)); diff != "" {
			t.Fatalf("%s: delta %d added (-ref +compact):\n%s", when, i, diff)
		}
	}
	if !gs {
		return
	}
	for _, zn := range ref.served() {
		// Names and types in the same order, the records of an RRset
		// in any order (see the lookups).
		ga, wa := z.axfr(zn), ref.axfr(zn)
		if diff := cmp.Diff(owners(wa), owners(ga)); diff != "" {
			t.Fatalf("%s: AXFR %s names and types (-ref +compact):\n%s", when, zn, diff)
		}
		if diff := cmp.Diff(sortedWire(t, wa), sortedWire(t, ga)); diff != "" {
			t.Fatalf("%s: AXFR %s (-ref +compact):\n%s", when, zn, diff)
		}
		for _, d := range ref.history {
			// Deltas of a domain change or a re-list come in the
			// reference's map order: compare them as sets.
			if diff := cmp.Diff(sortedWire(t, ref.ixfr(zn, d.from)), sortedWire(t, z.ixfr(zn, d.from))); diff != "" {
				t.Fatalf("%s: IXFR %s from %d (-ref +compact):\n%s", when, zn, d.from, diff)
			}
		}
	}
}
