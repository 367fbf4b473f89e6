package dnsbridge

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

var (
	testDomain = ila.Domain{Name: "dc1", SIR: ila.SIRPrefix(0x2001_0db8_0001_0000), Csum: ila.CsumNeutralMap}
	locA       = ila.Locator(0xfd00_0000_0000_000a)
	locB       = ila.Locator(0xfd00_0000_0000_000b)
)

func mustLUID(t testing.TB, v uint64) ila.Identifier {
	t.Helper()
	id, err := ila.NewLUID(v)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func testTask(t testing.TB, name, tenant string, id uint64, loc ila.Locator, nve, v4 string) ila.Task {
	t.Helper()
	i := mustLUID(t, id)
	tk := ila.Task{
		Domain: testDomain.Name, Name: name, Tenant: tenant, Identifier: i,
		SIR: testDomain.SIR.Addr(i), Locator: loc, NVE: nve, Version: 1, State: ila.StateActive,
	}
	if v4 != "" {
		tk.IPv4 = netip.MustParseAddr(v4)
	}
	return tk
}

func ilaAddr(t testing.TB, tk ila.Task) netip.Addr {
	t.Helper()
	a, err := tk.Mapping(testDomain).ILAAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func upsert(rev int64, v any) ila.Event {
	switch x := v.(type) {
	case ila.Task:
		return ila.Event{Type: ila.EventTaskUpsert, Revision: rev, Task: &x}
	case ila.NVE:
		return ila.Event{Type: ila.EventNVEUpsert, Revision: rev, NVE: &x}
	case ila.Domain:
		return ila.Event{Type: ila.EventDomainUpsert, Revision: rev, Domain: &x}
	}
	panic("upsert of unknown type")
}

func synced(rev int64) ila.Event { return ila.Event{Type: ila.EventSynced, Revision: rev} }

func testZone(t testing.TB, cfg Config, evs ...ila.Event) *zone {
	t.Helper()
	cfg, err := cfg.validate()
	if err != nil {
		t.Fatal(err)
	}
	z := newZone(cfg)
	for _, ev := range evs {
		z.apply(ev)
	}
	return z
}

// rrStrings renders records for comparison, sorted.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, r := range rrs {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

func rev(a netip.Addr) string {
	s, err := dns.ReverseAddr(a.String())
	if err != nil {
		panic(err)
	}
	return s
}

func TestLookup(t *testing.T) {
	web := testTask(t, "web", "blue", 0x1001, locA, "nve1", "10.1.2.3")
	db := testTask(t, "DB", "Blue", 0x1002, locB, "nve2", "")
	bad := testTask(t, "has.dot", "blue", 0x1003, locA, "nve1", "")
	nve := ila.NVE{Name: "nve1", Locators: []ila.Locator{locA}, Underlay: netip.MustParseAddr("2001:db8:ff::1")}
	nve4 := ila.NVE{Name: "nve2", Locators: []ila.Locator{locB, locA}, Underlay: netip.MustParseAddr("192.0.2.7")}
	z := testZone(t, Config{}, upsert(5, testDomain), upsert(6, web), upsert(7, db), upsert(7, bad),
		upsert(8, nve), upsert(8, nve4), synced(9))

	const soa = "ila.internal.\t5\tIN\tSOA\tns.ila.internal. hostmaster.ila.internal. 9 60 10 604800 5"
	sirRev := rev(web.SIR)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		zone   string
		rcode  int
		answer []string
		ns     []string
	}{
		{"task AAAA is the SIR address", "web.blue.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeSuccess,
			[]string{"web.blue.ila.internal.\t5\tIN\tAAAA\t" + web.SIR.String()}, nil},
		{"task A for an IPv4 tenant", "web.blue.ila.internal.", dns.TypeA, "ila.internal.", dns.RcodeSuccess,
			[]string{"web.blue.ila.internal.\t5\tIN\tA\t10.1.2.3"}, nil},
		{"names are lower-cased", "db.blue.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeSuccess,
			[]string{"db.blue.ila.internal.\t5\tIN\tAAAA\t" + db.SIR.String()}, nil},
		{"A of an IPv6-only task is NODATA", "db.blue.ila.internal.", dns.TypeA, "ila.internal.", dns.RcodeSuccess, nil, []string{soa}},
		{"identifier AAAA is the ILA address", web.Identifier.Hex() + ".id.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeSuccess,
			[]string{web.Identifier.Hex() + ".id.ila.internal.\t5\tIN\tAAAA\t" + ilaAddr(t, web).String()}, nil},
		{"identifier TXT", web.Identifier.Hex() + ".id.ila.internal.", dns.TypeTXT, "ila.internal.", dns.RcodeSuccess,
			[]string{web.Identifier.Hex() + ".id.ila.internal.\t5\tIN\tTXT\t\"locator=fd00:0:0:a\" \"nve=nve1\" \"version=1\" \"state=active\" \"domain=dc1\""}, nil},
		{"task with a dotted name keeps its identifier records", bad.Identifier.Hex() + ".id.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeSuccess,
			[]string{bad.Identifier.Hex() + ".id.ila.internal.\t5\tIN\tAAAA\t" + ilaAddr(t, bad).String()}, nil},
		{"NVE AAAA", "nve1.nve.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeSuccess,
			[]string{"nve1.nve.ila.internal.\t5\tIN\tAAAA\t2001:db8:ff::1"}, nil},
		{"NVE TXT lists locators", "nve2.nve.ila.internal.", dns.TypeTXT, "ila.internal.", dns.RcodeSuccess,
			[]string{"nve2.nve.ila.internal.\t5\tIN\tTXT\t\"locator=fd00:0:0:b\" \"locator=fd00:0:0:a\""}, nil},
		{"NVE with an IPv4 underlay", "nve2.nve.ila.internal.", dns.TypeA, "ila.internal.", dns.RcodeSuccess,
			[]string{"nve2.nve.ila.internal.\t5\tIN\tA\t192.0.2.7"}, nil},
		{"PTR of a SIR address", sirRev, dns.TypePTR, "0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", dns.RcodeSuccess,
			[]string{sirRev + "\t5\tIN\tPTR\tweb.blue.ila.internal."}, nil},
		{"PTR of a dotted name points at the identifier", rev(bad.SIR), dns.TypePTR, "0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", dns.RcodeSuccess,
			[]string{rev(bad.SIR) + "\t5\tIN\tPTR\t" + bad.Identifier.Hex() + ".id.ila.internal."}, nil},
		{"PTR of a tenant IPv4 address", "3.2.1.10.in-addr.arpa.", dns.TypePTR, "2.1.10.in-addr.arpa.", dns.RcodeSuccess,
			[]string{"3.2.1.10.in-addr.arpa.\t5\tIN\tPTR\tweb.blue.ila.internal."}, nil},
		{"unknown IPv4 in a served /24 is NXDOMAIN", "4.2.1.10.in-addr.arpa.", dns.TypePTR, "2.1.10.in-addr.arpa.", dns.RcodeNameError, nil,
			[]string{"2.1.10.in-addr.arpa.\t5\tIN\tSOA\tns.ila.internal. hostmaster.ila.internal. 9 60 10 604800 5"}},
		{"apex SOA", "ila.internal.", dns.TypeSOA, "ila.internal.", dns.RcodeSuccess, []string{soa}, nil},
		{"apex NS", "ILA.internal.", dns.TypeNS, "ila.internal.", dns.RcodeSuccess, []string{"ila.internal.\t5\tIN\tNS\tns.ila.internal."}, nil},
		{"apex A is NODATA", "ila.internal.", dns.TypeA, "ila.internal.", dns.RcodeSuccess, nil, []string{soa}},
		{"tenant is an empty non-terminal: NODATA", "blue.ila.internal.", dns.TypeA, "ila.internal.", dns.RcodeSuccess, nil, []string{soa}},
		{"id is an empty non-terminal: NODATA", "id.ila.internal.", dns.TypeTXT, "ila.internal.", dns.RcodeSuccess, nil, []string{soa}},
		{"wrong type at a name: NODATA", "web.blue.ila.internal.", dns.TypeMX, "ila.internal.", dns.RcodeSuccess, nil, []string{soa}},
		{"unknown task: NXDOMAIN", "nope.blue.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeNameError, nil, []string{soa}},
		{"unknown tenant: NXDOMAIN", "web.red.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeNameError, nil, []string{soa}},
		{"below a task: NXDOMAIN", "x.web.blue.ila.internal.", dns.TypeAAAA, "ila.internal.", dns.RcodeNameError, nil, []string{soa}},
		{"outside every zone: REFUSED", "example.com.", dns.TypeA, "", dns.RcodeRefused, nil, nil},
		{"parent of the apex: REFUSED", "internal.", dns.TypeSOA, "", dns.RcodeRefused, nil, nil},
		{"reverse outside the domains: REFUSED", rev(netip.MustParseAddr("2001:db8:2::1")), dns.TypePTR, "", dns.RcodeRefused, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := z.lookup(dns.CanonicalName(tc.qname), tc.qtype)
			if got.zone != tc.zone || got.rcode != tc.rcode {
				t.Errorf("zone, rcode = %q, %s; want %q, %s", got.zone, dns.RcodeToString[got.rcode], tc.zone, dns.RcodeToString[tc.rcode])
			}
			if diff := cmp.Diff(tc.answer, rrStrings(got.answer)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ns, rrStrings(got.ns)); diff != "" {
				t.Errorf("authority (-want +got):\n%s", diff)
			}
		})
	}
	if got := z.badNames; got != 1 {
		t.Errorf("badNames = %d, want 1", got)
	}
}

func TestChanges(t *testing.T) {
	web := testTask(t, "web", "blue", 0x1001, locA, "nve1", "")
	idName := web.Identifier.Hex() + ".id.ila.internal."
	moved := web
	moved.Locator, moved.NVE, moved.Version = locB, "nve2", 2

	aaaa := func(z *zone, name string) []string { return rrStrings(z.lookup(name, dns.TypeAAAA).answer) }
	t.Run("servfail before the first sync", func(t *testing.T) {
		z := testZone(t, Config{}, upsert(5, testDomain), upsert(6, web))
		if got := z.lookup("web.blue.ila.internal.", dns.TypeAAAA).rcode; got != dns.RcodeServerFailure {
			t.Errorf("rcode = %s, want SERVFAIL", dns.RcodeToString[got])
		}
		if got := z.lookup("example.org.", dns.TypeAAAA).rcode; got != dns.RcodeRefused {
			t.Errorf("rcode outside = %s, want REFUSED", dns.RcodeToString[got])
		}
	})
	t.Run("move changes the identifier AAAA and bumps the serial to the revision", func(t *testing.T) {
		z := testZone(t, Config{}, upsert(5, testDomain), upsert(6, web), synced(6))
		if _, s := z.state(); s != 6 {
			t.Fatalf("serial = %d, want 6", s)
		}
		if !z.apply(upsert(10, moved)) {
			t.Fatal("move reported no change")
		}
		want := []string{idName + "\t5\tIN\tAAAA\t" + ilaAddr(t, moved).String()}
		if diff := cmp.Diff(want, aaaa(z, idName)); diff != "" {
			t.Errorf("after move (-want +got):\n%s", diff)
		}
		if _, s := z.state(); s != 10 {
			t.Errorf("serial = %d, want 10", s)
		}
	})
	t.Run("unchanged upsert keeps the serial", func(t *testing.T) {
		z := testZone(t, Config{}, upsert(5, testDomain), upsert(6, web), synced(6))
		same := web
		same.Expiry = same.Expiry.AddDate(1, 0, 0) // not published
		if z.apply(upsert(11, same)) {
			t.Error("upsert of a record with the same DNS data reported a change")
		}
		if _, s := z.state(); s != 6 {
			t.Errorf("serial = %d, want 6", s)
		}
	})
	t.Run("delete gives NXDOMAIN", func(t *testing.T) {
		z := testZone(t, Config{}, upsert(5, testDomain), upsert(6, web), synced(6),
			ila.Event{Type: ila.EventTaskDelete, Revision: 12, Task: &web})
		if got := z.lookup("web.blue.ila.internal.", dns.TypeAAAA).rcode; got != dns.RcodeNameError {
			t.Errorf("rcode = %s, want NXDOMAIN", dns.RcodeToString[got])
		}
		if got := z.lookup("blue.ila.internal.", dns.TypeAAAA).rcode; got != dns.RcodeNameError {
			t.Errorf("tenant without tasks: rcode = %s, want NXDOMAIN", dns.RcodeToString[got])
		}
		if n := z.nodes.len(); n != 0 {
			t.Errorf("%d names left after the last delete", n)
		}
		if n := z.ents.len(); n != 0 {
			t.Errorf("%d empty non-terminals left after the last delete", n)
		}
	})
	t.Run("domain after task publishes the ILA address and the reverse zone", func(t *testing.T) {
		z := testZone(t, Config{}, upsert(6, web), synced(6))
		if got := aaaa(z, idName); len(got) != 0 {
			t.Errorf("ILA address without a domain: %v", got)
		}
		if got := z.lookup(rev(web.SIR), dns.TypePTR).rcode; got != dns.RcodeRefused {
			t.Errorf("PTR without a domain: rcode %s, want REFUSED", dns.RcodeToString[got])
		}
		z.apply(upsert(7, testDomain))
		if got := aaaa(z, idName); len(got) != 1 {
			t.Errorf("ILA address after the domain: %v", got)
		}
		if got := z.lookup(rev(web.SIR), dns.TypePTR); got.rcode != dns.RcodeSuccess || len(got.answer) != 1 {
			t.Errorf("PTR after the domain: %+v", got)
		}
	})
	t.Run("a fresh watch sweeps what it did not list", func(t *testing.T) {
		other := testTask(t, "db", "blue", 0x1002, locA, "nve1", "")
		z := testZone(t, Config{}, upsert(5, testDomain), upsert(6, web), upsert(6, other), synced(6))
		z.beginList()
		z.apply(upsert(20, testDomain))
		z.apply(upsert(20, web))
		if got := z.lookup("db.blue.ila.internal.", dns.TypeAAAA).rcode; got != dns.RcodeSuccess {
			t.Fatalf("during the list: rcode %s, want the old record served", dns.RcodeToString[got])
		}
		z.apply(synced(20))
		if got := z.lookup("db.blue.ila.internal.", dns.TypeAAAA).rcode; got != dns.RcodeNameError {
			t.Errorf("after the list: rcode %s, want NXDOMAIN", dns.RcodeToString[got])
		}
		if _, s := z.state(); s != 20 {
			t.Errorf("serial = %d, want 20", s)
		}
	})
	t.Run("configured reverse v4 zone replaces the derived /24", func(t *testing.T) {
		v4 := testTask(t, "web", "blue", 0x1001, locA, "nve1", "10.1.2.3")
		z := testZone(t, Config{ReverseV4: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, upsert(6, v4), synced(6))
		if got := z.lookup("3.2.1.10.in-addr.arpa.", dns.TypePTR).zone; got != "10.in-addr.arpa." {
			t.Errorf("zone = %q, want 10.in-addr.arpa.", got)
		}
	})
}

func TestIXFRHistory(t *testing.T) {
	web := testTask(t, "web", "blue", 0x1001, locA, "nve1", "")
	idName := web.Identifier.Hex() + ".id.ila.internal."
	moved := web
	moved.Locator, moved.Version = locB, 2
	z := testZone(t, Config{History: 2}, upsert(5, testDomain), upsert(6, web), synced(6))
	z.apply(upsert(10, moved))
	// Two events of one transaction (same revision) make one delta.
	db := testTask(t, "db", "blue", 0x1002, locA, "nve1", "")
	z.apply(upsert(11, db))
	z.apply(ila.Event{Type: ila.EventTaskDelete, Revision: 11, Task: &db})
	if n := len(z.history); n != 2 {
		t.Fatalf("history has %d deltas, want 2", n)
	}
	if d := z.history[1]; d.from != 10 || d.to != 11 || len(d.del)+len(d.add) != 0 {
		t.Errorf("delta of an add and delete in one revision = %d->%d -%d +%d, want 10->11 and nothing", d.from, d.to, len(d.del), len(d.add))
	}

	got := z.ixfr("ila.internal.", 6)
	var sum []string
	for _, r := range got {
		switch r := r.(type) {
		case *dns.SOA:
			sum = append(sum, "SOA "+strconv.FormatUint(uint64(r.Serial), 10))
		default:
			sum = append(sum, r.Header().Name+" "+dns.TypeToString[r.Header().Rrtype])
		}
	}
	want := []string{
		"SOA 11",
		"SOA 6", idName + " AAAA", idName + " TXT",
		"SOA 10", idName + " AAAA", idName + " TXT",
		"SOA 10",
		"SOA 11",
		"SOA 11",
	}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Errorf("ixfr from 6 (-want +got):\n%s", diff)
	}
	if got := z.ixfr("ila.internal.", 11); len(got) != 1 {
		t.Errorf("ixfr from the current serial: %d records, want the SOA alone", len(got))
	}
	// Past the bound the history no longer holds serial 6... after one more change.
	z.apply(upsert(12, web))
	full := z.ixfr("ila.internal.", 6)
	if diff := cmp.Diff(rrStrings(z.axfr("ila.internal.")), rrStrings(full)); diff != "" {
		t.Errorf("ixfr from a serial older than the history is not the whole zone (-axfr +ixfr):\n%s", diff)
	}
}
