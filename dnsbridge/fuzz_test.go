package dnsbridge

import (
	"net"
	"net/netip"
	"testing"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// fuzzWriter is a dns.ResponseWriter that packs what it is given.
type fuzzWriter struct {
	t      *testing.T
	udp    bool
	wrote  int
	badSig bool
}

func (w *fuzzWriter) LocalAddr() net.Addr  { return w.addr() }
func (w *fuzzWriter) RemoteAddr() net.Addr { return w.addr() }
func (w *fuzzWriter) addr() net.Addr {
	if w.udp {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}

func (w *fuzzWriter) WriteMsg(m *dns.Msg) error {
	w.wrote++
	if m.IsTsig() != nil {
		return nil // signing needs the server's TSIG state
	}
	b, err := m.Pack()
	if err != nil {
		w.t.Fatalf("reply does not pack: %v\n%v", err, m)
	}
	if w.udp && len(b) > dns.MaxMsgSize {
		w.t.Fatalf("udp reply of %d bytes", len(b))
	}
	if err := new(dns.Msg).Unpack(b); err != nil {
		w.t.Fatalf("reply does not parse: %v", err)
	}
	return nil
}
func (w *fuzzWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fuzzWriter) Close() error                { return nil }
func (w *fuzzWriter) TsigStatus() error {
	if w.badSig {
		return dns.ErrSig
	}
	return nil
}
func (w *fuzzWriter) TsigTimersOnly(bool) {}
func (w *fuzzWriter) Hijack()             {}

func fuzzServer(t testing.TB) *Server {
	s, err := New(Config{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	web := testTask(t, "web", "blue", 0x1001, locA, "nve1", "10.1.2.3")
	for _, ev := range append(bigTasks(t, 3), upsert(5, testDomain), upsert(6, web),
		upsert(7, ila.NVE{Name: "nve1", Locators: []ila.Locator{locA}, Underlay: netip.MustParseAddr("2001:db8:ff::1")}), synced(7)) {
		s.apply(ev)
	}
	return s
}

// FuzzQuery feeds arbitrary wire messages to the handler, as the miekg
// server would after parsing them: it never panics and every reply packs.
func FuzzQuery(f *testing.F) {
	for _, m := range []*dns.Msg{
		new(dns.Msg).SetQuestion("web.blue.ila.internal.", dns.TypeAAAA),
		new(dns.Msg).SetQuestion("0000000000001001.id.ila.internal.", dns.TypeTXT),
		new(dns.Msg).SetQuestion("big.blue.ila.internal.", dns.TypeANY),
		new(dns.Msg).SetQuestion("3.2.1.10.in-addr.arpa.", dns.TypePTR),
		new(dns.Msg).SetQuestion("ila.internal.", dns.TypeSOA).SetEdns0(4096, true),
		new(dns.Msg).SetAxfr("ila.internal."),
		new(dns.Msg).SetIxfr("ila.internal.", 1, "ns.ila.internal.", "h.ila.internal."),
		new(dns.Msg).SetNotify("ila.internal."),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			return // the miekg server answers FORMERR or drops it before the handler
		}
		for _, udp := range []bool{true, false} {
			s.ServeDNS(&fuzzWriter{t: t, udp: udp}, m)
			s.ServeDNS(&fuzzWriter{t: t, udp: udp, badSig: true}, m)
		}
	})
}

// FuzzNames publishes tasks and NVEs with arbitrary names: nothing panics,
// and every record served packs.
func FuzzNames(f *testing.F) {
	f.Add("web", "blue", "nve1", uint64(0x1001))
	f.Add("has.dot", "Blue", "n v e", uint64(0))
	f.Add("id", "nve", "", uint64(1<<60))
	f.Add("-", "_", "\x00", uint64(0xffffffffffffffff))
	f.Fuzz(func(t *testing.T, name, tenant, nve string, id uint64) {
		z := testZone(t, Config{}, upsert(5, testDomain))
		i := ila.Identifier(id)
		tk := ila.Task{Domain: testDomain.Name, Name: name, Tenant: tenant, Identifier: i, SIR: testDomain.SIR.Addr(i), Locator: locA, NVE: nve, Version: 1}
		z.apply(upsert(6, tk))
		z.apply(upsert(6, ila.NVE{Name: nve, Locators: []ila.Locator{locA}, Underlay: netip.MustParseAddr("2001:db8:ff::1")}))
		z.apply(synced(6))
		for _, zn := range z.served() {
			m := new(dns.Msg).SetQuestion(zn, dns.TypeAXFR)
			m.Answer = z.axfr(zn)
			if _, err := m.Pack(); err != nil {
				t.Fatalf("zone %s does not pack: %v", zn, err)
			}
		}
		z.apply(ila.Event{Type: ila.EventTaskDelete, Revision: 7, Task: &tk})
		z.apply(ila.Event{Type: ila.EventNVEDelete, Revision: 8, NVE: &ila.NVE{Name: nve}})
		if z.nodes.len() != 0 || z.ents.len() != 0 {
			t.Fatalf("records left after deleting everything: %d names, %d non-terminals", z.nodes.len(), z.ents.len())
		}
	})
}
