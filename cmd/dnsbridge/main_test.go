package main

import (
	"bytes"
	"context"
	"fmt"
	"github.com/ilamesh/ilamesh/internal/metriclist"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/internal/etcdtls"
	"github.com/ilamesh/ilamesh/internal/etcdtls/etcdtlstest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
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

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	badTSIG := filepath.Join(dir, "tsig")
	if err := os.WriteFile(badTSIG, []byte("only-a-name\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no endpoints", []string{"--listen", "127.0.0.1:0"}, "--etcd-endpoints is required"},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined"},
		{"bad transfer prefix", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--allow-transfer", "10.0.0.0/33"}, "--allow-transfer"},
		{"notify needs an address", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--notify", "ns2.example:53"}, "--notify"},
		{"bad ttl", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--ttl", "1ms"}, "ttl"},
		{"bad zone", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--zone", "a..b"}, "zone"},
		{"bad listen", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--listen", "nowhere"}, "listen address"},
		{"bad tsig file", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--tsig-file", badTSIG}, "want NAME SECRET"},
		{"missing tsig file", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--tsig-file", filepath.Join(dir, "none")}, "tsig file"},
		{"extra argument", []string{"--etcd-endpoints", "http://127.0.0.1:1", "x"}, "unexpected arguments"},
		{"bad log level", []string{"--etcd-endpoints", "http://127.0.0.1:1", "--log-level", "loud"}, "--log-level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr syncBuffer
			err := run(t.Context(), tc.args, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

var (
	listening        = regexp.MustCompile(`msg="dns listening" udp=(\S+)`)
	metricsListening = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)
)

// startBridge runs the command against endpoints and returns its address
// and a function stopping it (also called at cleanup).
func startBridge(t *testing.T, endpoints []string, extra ...string) (string, func()) {
	t.Helper()
	addr, _, stop := startBridgeLog(t, endpoints, extra...)
	return addr, stop
}

// startBridgeLog is startBridge that also returns the command's log.
func startBridgeLog(t *testing.T, endpoints []string, extra ...string) (string, *syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	args := append([]string{
		"--etcd-endpoints", strings.Join(endpoints, ","),
		"--listen", "127.0.0.1:0", "--zone", "ila.test.", "--allow-transfer", "127.0.0.0/8",
	}, extra...)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, stderr) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v\n%s", err, stderr)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("run did not return after cancel\n%s", stderr)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], stderr, stop
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("bridge did not start\n%s", stderr)
	return "", nil, nil
}

// fixture is a mapping service over a real etcd with one domain, two NVEs
// and a task registered at the first.
type fixture struct {
	cli      *clientv3.Client
	svc      *mapsrv.Service
	dom      ila.Domain
	locA     ila.Locator
	locB     ila.Locator
	sir      netip.Addr
	idName   string
	taskName string
}

func newFixture(t testing.TB, cli *clientv3.Client) *fixture {
	t.Helper()
	ctx := t.Context()
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		cli: cli, svc: svc,
		dom:  ila.Domain{Name: "dc1", SIR: ila.SIRPrefix(0x2001_0db8_0001_0000), Csum: ila.CsumNeutralMap},
		locA: ila.Locator(0xfd00_0000_0000_000a), locB: ila.Locator(0xfd00_0000_0000_000b),
		sir: netip.MustParseAddr("2001:db8:1::1001"),
	}
	f.idName = ila.IdentifierOf(f.sir).Hex() + ".id.ila.test."
	f.taskName = "web.blue.ila.test."
	if err := svc.AddDomain(ctx, f.dom); err != nil {
		t.Fatal(err)
	}
	for i, loc := range []ila.Locator{f.locA, f.locB} {
		n := mapsrv.NVERecord{NVE: ila.NVE{Name: fmt.Sprintf("nve%d", i+1), Locators: []ila.Locator{loc}, Underlay: netip.MustParseAddr(fmt.Sprintf("2001:db8:ff::%d", i+1))}}
		if err := svc.AddNVE(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "nve1", Tenant: "blue", Name: "web", SIR: f.sir}); err != nil {
		t.Fatal(err)
	}
	return f
}

// ilaAddr is the ILA address of the task under loc.
func (f *fixture) ilaAddr(t testing.TB, loc ila.Locator) string {
	t.Helper()
	a, err := f.dom.ToILA(f.sir, loc)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

func (f *fixture) move(t *testing.T, to string) {
	t.Helper()
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "blue", Name: "web", To: to}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) revision(t *testing.T) uint32 {
	t.Helper()
	r, err := f.cli.Get(t.Context(), "/ila/v1/")
	if err != nil {
		t.Fatal(err)
	}
	return uint32(r.Header.Revision)
}

func exchange(t *testing.T, nw, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: nw, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, qtype), addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", nw, name, dns.TypeToString[qtype], err)
	}
	return r
}

// rdata returns the data of the answers ("AAAA 2001:db8::1").
func rdata(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		s := rr.String()
		h := rr.Header().String()
		out = append(out, dns.TypeToString[rr.Header().Rrtype]+" "+strings.TrimPrefix(s, h))
	}
	return out
}

// waitAnswer polls until name/qtype answers want over nw.
func waitAnswer(t *testing.T, nw, addr, name string, qtype uint16, want []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // etcd restarts and reconnect backoff under -race
	var got []string
	for time.Now().Before(deadline) {
		got = rdata(exchange(t, nw, addr, name, qtype))
		if cmp.Equal(want, got) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s %s: %v, want %v", name, dns.TypeToString[qtype], got, want)
}

func soaSerial(t *testing.T, addr string) uint32 {
	t.Helper()
	r := exchange(t, "udp", addr, "ila.test.", dns.TypeSOA)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA: %v", r)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// startSecondary runs a miekg/dns server standing for a secondary: it
// acknowledges NOTIFYs and passes them to the test.
func startSecondary(t *testing.T) (string, chan *dns.Msg) {
	t.Helper()
	notified := make(chan *dns.Msg, 16)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Opcode == dns.OpcodeNotify {
			select {
			case notified <- r:
			default:
			}
		}
		m := new(dns.Msg).SetReply(r)
		m.Authoritative = true
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String(), notified
}

func waitNotify(t *testing.T, notified chan *dns.Msg, zone string, serial uint32) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-notified:
			if len(m.Answer) == 1 && m.Question[0].Name == zone {
				if soa, ok := m.Answer[0].(*dns.SOA); ok && soa.Serial == serial {
					return
				}
			}
		case <-timeout:
			t.Fatalf("no NOTIFY for %s serial %d", zone, serial)
		}
	}
}

// TestIntegrationEtcd runs the command against a real etcd written by the
// real mapping service: register, query over UDP and TCP, move, see the
// answer change, transfer the zone, deregister.
func TestIntegrationEtcd(t *testing.T) {
	cli, endpoints := etcdtest.Start(t)
	f := newFixture(t, cli)
	secondary, notified := startSecondary(t)
	addr, log, _ := startBridgeLog(t, endpoints, "--metrics", "127.0.0.1:0", "--notify", secondary)

	// An IPv4 tenant: A record and in-addr.arpa PTR.
	if _, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: "nve1", Tenant: "green", Name: "db", IPv4: netip.MustParseAddr("10.1.2.3"), VNI: 7}); err != nil {
		t.Fatal(err)
	}
	waitAnswer(t, "udp", addr, "db.green.ila.test.", dns.TypeA, []string{"A 10.1.2.3"})
	waitAnswer(t, "tcp", addr, "3.2.1.10.in-addr.arpa.", dns.TypePTR, []string{"PTR db.green.ila.test."})

	for _, nw := range []string{"udp", "tcp"} {
		waitAnswer(t, nw, addr, f.taskName, dns.TypeAAAA, []string{"AAAA " + f.sir.String()})
		waitAnswer(t, nw, addr, f.idName, dns.TypeAAAA, []string{"AAAA " + f.ilaAddr(t, f.locA)})
		waitAnswer(t, nw, addr, "nve2.nve.ila.test.", dns.TypeAAAA, []string{"AAAA 2001:db8:ff::2"})
	}
	before := soaSerial(t, addr)
	if want := f.revision(t); before != want {
		t.Errorf("serial %d, want the store revision %d", before, want)
	}

	f.move(t, "nve2")
	rev := f.revision(t)
	waitNotify(t, notified, "ila.test.", rev)
	// The secondary's IXFR from the serial it had: the move and nothing else.
	tr := &dns.Transfer{}
	ch, err := tr.In(new(dns.Msg).SetIxfr("ila.test.", before, "ns.ila.test.", "hostmaster.ila.test."), addr)
	if err != nil {
		t.Fatal(err)
	}
	var ixfr []string
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("IXFR: %v", env.Error)
		}
		for _, rr := range env.RR {
			switch rr := rr.(type) {
			case *dns.SOA:
				ixfr = append(ixfr, fmt.Sprint("SOA ", rr.Serial))
			case *dns.AAAA:
				ixfr = append(ixfr, rr.Hdr.Name+" AAAA "+rr.AAAA.String())
			case *dns.TXT:
				ixfr = append(ixfr, rr.Hdr.Name+" TXT "+strings.Join(rr.Txt, " "))
			}
		}
	}
	wantIXFR := []string{
		fmt.Sprint("SOA ", rev),
		fmt.Sprint("SOA ", before),
		f.idName + " AAAA " + f.ilaAddr(t, f.locA),
		f.idName + " TXT locator=fd00:0:0:a nve=nve1 version=1 state=active domain=dc1",
		fmt.Sprint("SOA ", rev),
		f.idName + " AAAA " + f.ilaAddr(t, f.locB),
		f.idName + " TXT locator=fd00:0:0:b nve=nve2 version=2 state=active domain=dc1",
		fmt.Sprint("SOA ", rev),
	}
	if diff := cmp.Diff(wantIXFR, ixfr); diff != "" {
		t.Errorf("IXFR after the move (-want +got):\n%s", diff)
	}
	for _, nw := range []string{"udp", "tcp"} {
		waitAnswer(t, nw, addr, f.idName, dns.TypeAAAA, []string{"AAAA " + f.ilaAddr(t, f.locB)})
	}
	txt := rdata(exchange(t, "tcp", addr, f.idName, dns.TypeTXT))
	if want := []string{`TXT "locator=fd00:0:0:b" "nve=nve2" "version=2" "state=active" "domain=dc1"`}; !cmp.Equal(want, txt) {
		t.Errorf("TXT after the move: %v, want %v", txt, want)
	}
	if got := soaSerial(t, addr); got != rev {
		t.Errorf("serial after the move %d, want the store revision %d", got, rev)
	}
	ptr, err := dns.ReverseAddr(f.sir.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := rdata(exchange(t, "udp", addr, ptr, dns.TypePTR)); !cmp.Equal([]string{"PTR " + f.taskName}, got) {
		t.Errorf("PTR: %v", got)
	}

	ch, err = new(dns.Transfer).In(new(dns.Msg).SetAxfr("ila.test."), addr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("AXFR: %v", env.Error)
		}
		n += len(env.RR)
	}
	// SOA NS web/AAAA id/AAAA id/TXT db/AAAA db/A id/AAAA id/TXT
	// nve1/AAAA nve1/TXT nve2/AAAA nve2/TXT SOA
	if n != 14 {
		t.Errorf("AXFR: %d records, want 14", n)
	}

	m := metricsListening.FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", log)
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	metriclist.Check(t, "dnsbridge", body) // promlint, and deploy/grafana/metrics/dnsbridge.txt
	for _, want := range []string{
		"ila_dns_queries_total ", `ila_dns_responses_total{rcode="NOERROR"} `, "ila_dns_transfers_total 2", `ila_dns_notifies_total{result="acknowledged"}`,
		fmt.Sprintf("ila_dns_serial %d", rev), "ila_dns_synced 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	if err := f.svc.Deregister(t.Context(), mapsrv.DeregisterRequest{Tenant: "blue", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for exchange(t, "udp", addr, f.taskName, dns.TypeAAAA).Rcode != dns.RcodeNameError {
		if time.Now().After(deadline) {
			t.Fatal("deregistered task still answers")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestIntegrationStoreDown stops etcd under the bridge: the last zone keeps
// being served with the same serial, and changes flow again once etcd is
// back.
func TestIntegrationStoreDown(t *testing.T) {
	dir, err := os.MkdirTemp("", "dnsb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv := etcdtest.StartServer(t, dir)
	cli := etcdtest.NewClient(t, srv.Endpoints())
	f := newFixture(t, cli)
	addr, stop := startBridge(t, srv.Endpoints())
	defer stop() // before etcd closes: a watching client makes etcd's close wait
	waitAnswer(t, "udp", addr, f.idName, dns.TypeAAAA, []string{"AAAA " + f.ilaAddr(t, f.locA)})
	serial := soaSerial(t, addr)

	start := time.Now()
	srv.Close()
	t.Logf("closed etcd after %v", time.Since(start))
	time.Sleep(300 * time.Millisecond) // let the watch notice
	for _, nw := range []string{"udp", "tcp"} {
		if got := rdata(exchange(t, nw, addr, f.idName, dns.TypeAAAA)); !cmp.Equal([]string{"AAAA " + f.ilaAddr(t, f.locA)}, got) {
			t.Errorf("%s while etcd is down: %v", nw, got)
		}
	}
	if got := soaSerial(t, addr); got != serial {
		t.Errorf("serial while etcd is down %d, want %d", got, serial)
	}

	srv = etcdtest.StartServer(t, dir) // same data, same socket
	cli = etcdtest.NewClient(t, srv.Endpoints())
	f.cli = cli
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli)})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	t.Logf("etcd back after %v", time.Since(start))
	f.move(t, "nve2")
	t.Logf("moved after %v", time.Since(start))
	waitAnswer(t, "udp", addr, f.idName, dns.TypeAAAA, []string{"AAAA " + f.ilaAddr(t, f.locB)})
	t.Logf("answer after %v", time.Since(start))
	if got, want := soaSerial(t, addr), f.revision(t); got != want {
		t.Errorf("serial after etcd came back %d, want %d", got, want)
	}
}

// TestEtcdClientCertificate: against an etcd that demands client
// certificates, the bridge serves the mapping with --etcd-cert/key/ca and
// fails to start without them.
func TestEtcdClientCertificate(t *testing.T) {
	c, eps := etcdtlstest.Start(t)
	tc, err := etcdtls.Files{Cert: c.ClientCert, Key: c.ClientKey, CA: c.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tc, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	f := newFixture(t, cli)
	addr, _ := startBridge(t, eps, "--etcd-cert", c.ClientCert, "--etcd-key", c.ClientKey, "--etcd-ca", c.CA)
	waitAnswer(t, "udp", addr, f.taskName, dns.TypeAAAA, []string{"AAAA " + f.sir.String()})

	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"--etcd-endpoints", eps[0], "--listen", "127.0.0.1:0", "--etcd-cert", c.ClientCert}, &stderr); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("certificate without key: %v", err)
	}
}
