package dnsbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// fakeSource is a Source fed by the test. Sending on fail ends the current
// Watch with that error (the server watches again).
type fakeSource struct {
	evs     chan ila.Event
	fail    chan error
	watches chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{evs: make(chan ila.Event, 1024), fail: make(chan error), watches: make(chan struct{}, 16)}
}

func (f *fakeSource) Watch(ctx context.Context, fn func(ila.Event)) error {
	f.watches <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-f.fail:
			return err
		case ev := <-f.evs:
			fn(ev)
		}
	}
}

func (f *fakeSource) send(evs ...ila.Event) {
	for _, ev := range evs {
		f.evs <- ev
	}
}

// startServer runs a Server on 127.0.0.1 (UDP and TCP, one port) fed by
// src and returns it with its address once it has synced.
func startServer(t *testing.T, cfg Config, src Source) (*Server, string) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, ln, err := listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, src, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-s.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("server did not sync")
	}
	return s, pc.LocalAddr().String()
}

func query(t *testing.T, net, addr, name string, qtype uint16, edns int) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(uint16(edns), false)
	}
	c := &dns.Client{Net: net, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", net, name, dns.TypeToString[qtype], err)
	}
	return r
}

func answers(r *dns.Msg) []string { return rrStrings(r.Answer) }

func TestServeUDPAndTCP(t *testing.T) {
	web := testTask(t, "web", "blue", 0x1001, locA, "nve1", "10.1.2.3")
	src := newFakeSource()
	src.send(upsert(5, testDomain), upsert(6, web), synced(6))
	s, addr := startServer(t, Config{}, src)
	idName := web.Identifier.Hex() + ".id.ila.internal."

	for _, nw := range []string{"udp", "tcp"} {
		t.Run(nw, func(t *testing.T) {
			tests := []struct {
				name  string
				qname string
				qtype uint16
				rcode int
				want  []string
				soa   bool
			}{
				{"AAAA", "web.blue.ila.internal.", dns.TypeAAAA, dns.RcodeSuccess, []string{"web.blue.ila.internal.\t5\tIN\tAAAA\t" + web.SIR.String()}, false},
				{"0x20 case", "WeB.bLuE.ila.INTERNAL.", dns.TypeA, dns.RcodeSuccess, []string{"web.blue.ila.internal.\t5\tIN\tA\t10.1.2.3"}, false},
				{"ILA address", idName, dns.TypeAAAA, dns.RcodeSuccess, []string{idName + "\t5\tIN\tAAAA\t" + ilaAddr(t, web).String()}, false},
				{"NODATA", "web.blue.ila.internal.", dns.TypeTXT, dns.RcodeSuccess, nil, true},
				{"NXDOMAIN", "nope.blue.ila.internal.", dns.TypeAAAA, dns.RcodeNameError, nil, true},
				{"REFUSED", "www.example.com.", dns.TypeA, dns.RcodeRefused, nil, false},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					r := query(t, nw, addr, tc.qname, tc.qtype, 0)
					if r.Rcode != tc.rcode {
						t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
					}
					if diff := cmp.Diff(tc.want, answers(r)); diff != "" {
						t.Errorf("answer (-want +got):\n%s", diff)
					}
					gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
					if gotSOA != tc.soa {
						t.Errorf("SOA in authority = %v, want %v (%v)", gotSOA, tc.soa, r.Ns)
					}
					if want := tc.rcode != dns.RcodeRefused; r.Authoritative != want {
						t.Errorf("AA = %v, want %v", r.Authoritative, want)
					}
					if r.Question[0].Name != tc.qname {
						t.Errorf("question %q, want the query's %q", r.Question[0].Name, tc.qname)
					}
				})
			}
		})
	}

	// A move is served as soon as the event is applied.
	moved := web
	moved.Locator, moved.Version = locB, 2
	src.send(upsert(9, moved))
	want := []string{idName + "\t5\tIN\tAAAA\t" + ilaAddr(t, moved).String()}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := answers(query(t, "udp", addr, idName, dns.TypeAAAA, 0))
		if cmp.Equal(want, got) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the move: %v, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
	soa := query(t, "tcp", addr, "ila.internal.", dns.TypeSOA, 0).Answer[0].(*dns.SOA)
	if soa.Serial != 9 {
		t.Errorf("serial %d, want the revision 9", soa.Serial)
	}

	// The store goes away: the zone keeps being served, the serial stays.
	src.fail <- errors.New("etcd unreachable")
	if got := answers(query(t, "udp", addr, idName, dns.TypeAAAA, 0)); !cmp.Equal(want, got) {
		t.Errorf("while the store is down: %v, want %v", got, want)
	}
	if got := query(t, "udp", addr, "ila.internal.", dns.TypeSOA, 0).Answer[0].(*dns.SOA).Serial; got != 9 {
		t.Errorf("serial while the store is down: %d, want 9", got)
	}
	st := s.Stats()
	if st.Queries == 0 || st.NXDomain < 2 || st.Refused < 2 || st.Serial != 9 || !st.Synced {
		t.Errorf("stats %+v", st)
	}
}

// bigTasks returns n tasks named big.blue in n domains: n AAAA records at
// one name.
func bigTasks(t testing.TB, n int) []ila.Event {
	var evs []ila.Event
	for i := range n {
		d := ila.Domain{Name: fmt.Sprintf("d%d", i), SIR: ila.SIRPrefix(0x2001_0db8_0100_0000 + uint64(i)), Csum: ila.CsumNeutralMap}
		id := mustLUID(t, 0x2000+uint64(i))
		tk := ila.Task{Domain: d.Name, Name: "big", Tenant: "blue", Identifier: id, SIR: d.SIR.Addr(id), Locator: locA, NVE: "nve1", Version: 1, State: ila.StateActive}
		evs = append(evs, upsert(2, d), upsert(3, tk))
	}
	return evs
}

func TestTruncationAndEDNS(t *testing.T) {
	src := newFakeSource()
	src.send(bigTasks(t, 40)...)
	src.send(synced(3))
	_, addr := startServer(t, Config{}, src)

	tests := []struct {
		name    string
		net     string
		edns    int
		tc      bool
		full    bool
		optSize uint16 // 0: no OPT in the reply
	}{
		{"udp without EDNS is cut to 512 bytes", "udp", 0, true, false, 0},
		{"udp with EDNS 4096 gets the server's 1232", "udp", 4096, false, true, 1232},
		{"udp with EDNS 600", "udp", 600, true, false, 1232},
		{"tcp carries everything", "tcp", 0, false, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, tc.net, addr, "big.blue.ila.internal.", dns.TypeAAAA, tc.edns)
			if r.Truncated != tc.tc {
				t.Errorf("TC = %v, want %v", r.Truncated, tc.tc)
			}
			if got := len(r.Answer) == 40; got != tc.full {
				t.Errorf("%d answers, want all 40: %v", len(r.Answer), tc.full)
			}
			var got uint16
			if opt := r.IsEdns0(); opt != nil {
				got = opt.UDPSize()
			}
			if got != tc.optSize {
				t.Errorf("OPT size %d, want %d", got, tc.optSize)
			}
			r.Compress = true
			if n := r.Len(); tc.net == "udp" && n > max(512, min(tc.edns, 1232)) {
				t.Errorf("reply of %d bytes", n)
			}
		})
	}
	t.Run("EDNS version 1 is BADVERS", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("big.blue.ila.internal.", dns.TypeAAAA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeBadVers {
			t.Errorf("rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
		}
	})
}

// rawExchange sends b over UDP and returns the reply, or nil if none came
// within wait.
func rawExchange(t *testing.T, addr string, b []byte, wait time.Duration) *dns.Msg {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return m
}

func TestMalformed(t *testing.T) {
	src := newFakeSource()
	src.send(upsert(5, testDomain), synced(5))
	_, addr := startServer(t, Config{}, src)

	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	two := new(dns.Msg).SetQuestion("a.ila.internal.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	opt := new(dns.Msg).SetQuestion("a.ila.internal.", dns.TypeOPT)
	upd := new(dns.Msg).SetQuestion("ila.internal.", dns.TypeSOA)
	upd.Opcode = dns.OpcodeUpdate
	chaos := new(dns.Msg).SetQuestion("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	axfrUDP := new(dns.Msg).SetAxfr("ila.internal.")
	tests := []struct {
		name  string
		b     []byte
		rcode int // -1: no reply
	}{
		{"garbage is dropped", []byte{1, 2, 3}, -1},
		{"truncated header is dropped", pack(two)[:7], -1},
		{"two questions", pack(two), dns.RcodeFormatError},
		{"question of type OPT", pack(opt), dns.RcodeFormatError},
		{"update", pack(upd), dns.RcodeNotImplemented},
		{"chaos class", pack(chaos), dns.RcodeRefused},
		{"AXFR over UDP is refused to a stranger", pack(axfrUDP), dns.RcodeRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wait := 2 * time.Second
			if tc.rcode < 0 {
				wait = 200 * time.Millisecond
			}
			r := rawExchange(t, addr, tc.b, wait)
			switch {
			case tc.rcode < 0 && r != nil:
				t.Errorf("reply %s to garbage", dns.RcodeToString[r.Rcode])
			case tc.rcode >= 0 && r == nil:
				t.Errorf("no reply, want %s", dns.RcodeToString[tc.rcode])
			case r != nil && r.Rcode != tc.rcode:
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	src := newFakeSource()
	src.send(upsert(5, testDomain), synced(5))
	s, addr := startServer(t, Config{RateLimit: 1, RateBurst: 5}, src)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const sent = 30
	for i := range sent {
		m := new(dns.Msg).SetQuestion("ila.internal.", dns.TypeSOA)
		m.Id = uint16(i)
		b, _ := m.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		got++
	}
	// 5 from the burst, at most one more from the refill.
	if got < 5 || got > 6 {
		t.Errorf("%d of %d answered, want 5 or 6", got, sent)
	}
	if st := s.Stats(); st.RateLimited < sent-6 {
		t.Errorf("RateLimited = %d, want >= %d", st.RateLimited, sent-6)
	}
	// TCP is not limited (a client asked to retry over TCP must get through).
	if r := query(t, "tcp", addr, "ila.internal.", dns.TypeSOA, 0); r.Rcode != dns.RcodeSuccess {
		t.Errorf("tcp rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func transferIn(t *testing.T, addr string, m *dns.Msg, secrets map[string]string) ([]dns.RR, error) {
	t.Helper()
	tr := &dns.Transfer{TsigSecret: secrets}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			return rrs, env.Error
		}
		rrs = append(rrs, env.RR...)
	}
	return rrs, nil
}

const testKey = "xfr-key."

var testSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==" // base64 of a test secret

func TestTransfers(t *testing.T) {
	web := testTask(t, "web", "blue", 0x1001, locA, "nve1", "")
	idName := web.Identifier.Hex() + ".id.ila.internal."

	// A secondary: records the NOTIFYs it gets and acknowledges them.
	notified := make(chan *dns.Msg, 16)
	sec := &dns.Server{Net: "udp", Addr: "127.0.0.1:0", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Opcode == dns.OpcodeNotify {
			notified <- r
		}
		m := new(dns.Msg).SetReply(r)
		m.Authoritative = true
		w.WriteMsg(m)
	})}
	secPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sec.PacketConn = secPC
	go sec.ActivateAndServe()
	t.Cleanup(func() { sec.Shutdown() })

	src := newFakeSource()
	src.send(upsert(5, testDomain), upsert(6, web), synced(6))
	cfg := Config{
		AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Notify:        []netip.AddrPort{netip.MustParseAddrPort(secPC.LocalAddr().String())},
		NotifyDelay:   10 * time.Millisecond,
		TSIG:          map[string]string{testKey: testSecret},
	}
	s, addr := startServer(t, cfg, src)

	waitNotify := func(zone string, serial uint32) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case m := <-notified:
				soa, ok := m.Answer[0].(*dns.SOA)
				if m.Question[0].Name == zone && ok && soa.Serial == serial {
					return
				}
			case <-timeout:
				t.Fatalf("no NOTIFY for %s serial %d", zone, serial)
			}
		}
	}
	waitNotify("ila.internal.", 6)

	axfr, err := transferIn(t, addr, new(dns.Msg).SetAxfr("ila.internal."), nil)
	if err != nil {
		t.Fatalf("AXFR: %v", err)
	}
	if diff := cmp.Diff(rrStrings(s.z.axfr("ila.internal.")), rrStrings(axfr)); diff != "" {
		t.Errorf("AXFR (-zone +transferred):\n%s", diff)
	}
	if first, last := axfr[0].Header().Rrtype, axfr[len(axfr)-1].Header().Rrtype; first != dns.TypeSOA || last != dns.TypeSOA {
		t.Errorf("AXFR not framed by SOA: %s ... %s", dns.TypeToString[first], dns.TypeToString[last])
	}
	if !slices.ContainsFunc(axfr, func(r dns.RR) bool { return r.Header().Name == "web.blue.ila.internal." }) {
		t.Error("AXFR lacks web.blue")
	}
	rz := "0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
	raxfr, err := transferIn(t, addr, new(dns.Msg).SetAxfr(rz), nil)
	if err != nil {
		t.Fatalf("AXFR of the reverse zone: %v", err)
	}
	if len(raxfr) != 4 { // SOA NS PTR SOA
		t.Errorf("reverse AXFR: %v", raxfr)
	}

	// Move the task: NOTIFY, then IXFR from 6 gives the delta.
	moved := web
	moved.Locator, moved.Version = locB, 2
	src.send(upsert(9, moved))
	waitNotify("ila.internal.", 9)
	ixfr, err := transferIn(t, addr, new(dns.Msg).SetIxfr("ila.internal.", 6, "ns.ila.internal.", "hostmaster.ila.internal."), nil)
	if err != nil {
		t.Fatalf("IXFR: %v", err)
	}
	var sum []string
	for _, r := range ixfr {
		switch r := r.(type) {
		case *dns.SOA:
			sum = append(sum, fmt.Sprint("SOA ", r.Serial))
		case *dns.AAAA:
			sum = append(sum, r.Hdr.Name+" AAAA "+r.AAAA.String())
		default:
			sum = append(sum, r.Header().Name+" "+dns.TypeToString[r.Header().Rrtype])
		}
	}
	want := []string{
		"SOA 9",
		"SOA 6", idName + " AAAA " + ilaAddr(t, web).String(), idName + " TXT",
		"SOA 9", idName + " AAAA " + ilaAddr(t, moved).String(), idName + " TXT",
		"SOA 9",
	}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Errorf("IXFR (-want +got):\n%s", diff)
	}
	upToDate, err := transferIn(t, addr, new(dns.Msg).SetIxfr("ila.internal.", 9, "ns.ila.internal.", "hostmaster.ila.internal."), nil)
	if err != nil || len(upToDate) != 1 {
		t.Errorf("IXFR at the current serial: %v, %v; want the SOA alone", upToDate, err)
	}
	// Over UDP an IXFR gets the current SOA only (RFC 1995 section 2).
	m := new(dns.Msg).SetIxfr("ila.internal.", 6, "ns.ila.internal.", "hostmaster.ila.internal.")
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != 9 {
		t.Errorf("IXFR over UDP: %v, %v", r, err)
	}
	if _, err := transferIn(t, addr, new(dns.Msg).SetAxfr("example.com."), nil); err == nil {
		t.Error("AXFR of a zone not served succeeded")
	}
	if st := s.Stats(); st.Transfers < 4 || st.Notifies < 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestTransferAccess(t *testing.T) {
	src := newFakeSource()
	src.send(upsert(5, testDomain), synced(5))
	cfg := Config{
		AllowTransfer: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, // not the test client
		TSIG:          map[string]string{testKey: testSecret},
	}
	_, addr := startServer(t, cfg, src)
	signed := func() *dns.Msg {
		m := new(dns.Msg).SetAxfr("ila.internal.")
		m.SetTsig(testKey, dns.HmacSHA256, 300, time.Now().Unix())
		return m
	}
	tests := []struct {
		name    string
		m       *dns.Msg
		secrets map[string]string
		ok      bool
	}{
		{"unsigned from outside the allowed prefixes", new(dns.Msg).SetAxfr("ila.internal."), nil, false},
		{"signed with the key", signed(), map[string]string{testKey: testSecret}, true},
		{"signed with another secret", signed(), map[string]string{testKey: "b3RoZXItc2VjcmV0"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rrs, err := transferIn(t, addr, tc.m, tc.secrets)
			if ok := err == nil && len(rrs) >= 3; ok != tc.ok {
				t.Errorf("transfer ok = %v (%d records, %v), want %v", ok, len(rrs), err, tc.ok)
			}
		})
	}
	t.Run("signed query gets a signed answer", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("ila.internal.", dns.TypeSOA)
		m.SetTsig(testKey, dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Timeout: 2 * time.Second, TsigSecret: map[string]string{testKey: testSecret}}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.IsTsig() == nil || len(r.Answer) != 1 {
			t.Errorf("reply %v", r)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"bad zone", Config{Zone: "a..b"}},
		{"root zone", Config{Zone: "."}},
		{"space in zone", Config{Zone: "bad zone."}},
		{"escaped byte in zone", Config{Zone: `a\\000b.test.`}},
		{"ttl too short", Config{TTL: time.Millisecond}},
		{"bad tsig secret", Config{TSIG: map[string]string{"k.": "not base64!"}}},
		{"notify without port", Config{Notify: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 0)}}},
		{"reverse v4 not octet aligned", Config{ReverseV4: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/12")}}},
		{"reverse v6 not nibble aligned", Config{ReverseV6: []netip.Prefix{netip.MustParsePrefix("2001:db8::/33")}}},
		{"negative rate", Config{RateLimit: -1}},
		{"udp size too small", Config{UDPSize: 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
	if _, err := New(Config{}); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func TestSignedTruncation(t *testing.T) {
	src := newFakeSource()
	src.send(bigTasks(t, 60)...)
	src.send(synced(3))
	_, addr := startServer(t, Config{TSIG: map[string]string{testKey: testSecret}}, src)
	m := new(dns.Msg).SetQuestion("big.blue.ila.internal.", dns.TypeAAAA)
	m.SetEdns0(1232, false)
	m.SetTsig(testKey, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Timeout: 2 * time.Second, UDPSize: 65535, TsigSecret: map[string]string{testKey: testSecret}}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatal(err) // includes a signature that does not verify
	}
	if !r.Truncated || r.IsTsig() == nil {
		t.Errorf("TC = %v, signed = %v; want a truncated, signed answer", r.Truncated, r.IsTsig() != nil)
	}
	r.Compress = true
	if n := r.Len(); n > 1232 {
		t.Errorf("signed reply of %d bytes, over the 1232 negotiated", n)
	}
}
