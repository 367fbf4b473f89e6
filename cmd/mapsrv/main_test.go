package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ilamesh/ilamesh/internal/metriclist"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func freePort(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// start runs mapsrv with args until the test ends or stop is called.
func start(t testing.TB, api string, args ...string) (stop func()) {
	t.Helper()
	return startWith(t, newClient(t, api, ""), args...)
}

// startWith is start, checking health through c.
func startWith(t testing.TB, c *apiclient.Client, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, logs) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Health(hctx)
		hcancel()
		if err == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("mapsrv exited: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("mapsrv not healthy after 30s\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("mapsrv run: %v\n%s", err, logs)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("mapsrv did not stop\n%s", logs)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// newClient returns a client of the API at api (HOST:PORT).
func newClient(t testing.TB, api, token string) *apiclient.Client {
	t.Helper()
	c, err := apiclient.New(apiclient.Config{URL: "http://" + api, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawCall sends body as is, for requests the typed client cannot make,
// and returns the HTTP status.
func rawCall(t *testing.T, method, url, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// setup adds domain prod and NVE nve1 through c.
func setup(t testing.TB, c *apiclient.Client, csum ila.CsumMode) {
	t.Helper()
	if _, err := c.AddDomain(t.Context(), ila.Domain{Name: "prod", SIR: 0x20010db800000000, Csum: csum}); err != nil {
		t.Fatalf("add domain: %v", err)
	}
	if _, err := c.AddNVE(t.Context(), mapsrv.NVERecord{NVE: ila.NVE{Name: "nve1", Locators: []ila.Locator{0xfd00000000000001}, Underlay: netip.MustParseAddr("fd99::1")}}); err != nil {
		t.Fatalf("add nve: %v", err)
	}
}

func TestRunRegisterRestart(t *testing.T) {
	dir := t.TempDir()
	if len(dir) > 70 {
		var err error
		if dir, err = os.MkdirTemp("", "mapsrv"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	keysFile := filepath.Join(dir, "keys")
	keys := regproto.KeyFile{
		1: {NVE: "mapsrv", Secret: bytes.Repeat([]byte{1}, 32)},
		2: {NVE: "nve1", Secret: bytes.Repeat([]byte{2}, 32)},
	}
	if err := os.WriteFile(keysFile, keys.Format(), 0o600); err != nil {
		t.Fatal(err)
	}
	api, reg := freePort(t, "tcp"), freePort(t, "udp")
	etcdURL := "unix://" + filepath.Join(dir, "client.sock")
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--etcd-client-url", etcdURL, "--api-addr", api, "--reg-addr", reg, "--keys", keysFile}
	stop := start(t, api, args...)
	base := "http://" + api
	api1 := newClient(t, api, "")
	setup(t, api1, ila.CsumNeutralMap)
	// Register over UDP.
	c := &regproto.Client{Server: netip.MustParseAddrPort(reg), KeyID: 2, Secret: keys[2].Secret, Keys: keys, ServerKeyID: 1}
	defer c.Close()
	rep, err := c.Do(t.Context(), &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::7")}, Lifetime: 100})
	if err != nil || rep.Err() != nil {
		t.Fatalf("udp registration: %+v, %v", rep, err)
	}
	// A heartbeat reporting the NVE's applied revision (its metric below).
	if rep, err := c.Do(t.Context(), &regproto.Message{Heartbeat: true, Applied: 42}); err != nil || rep.Err() != nil {
		t.Fatalf("heartbeat: %+v, %v", rep, err)
	}
	// The API refuses bad input with clear errors.
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"identifier 0x0000", func() error {
			_, err := api1.Register(ctx, mapsrv.RegisterBody{NVE: "nve1", Name: "x", SIR: netip.MustParseAddr("2001:db8::1:0")})
			return err
		}, mapsrv.ErrInvalid},
		{"name taken", func() error {
			_, err := api1.Register(ctx, mapsrv.RegisterBody{NVE: "nve1", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::8")})
			return err
		}, mapsrv.ErrConflict},
		{"no such task", func() error { _, err := api1.Task(ctx, "t1", "nobody"); return err }, mapsrv.ErrNotFound},
		{"no such nve", func() error { _, err := api1.Move(ctx, "t1", "vm1", mapsrv.MoveBody{To: "nowhere"}); return err }, mapsrv.ErrNotFound},
		{"not duplicate", func() error { _, err := api1.ClearDuplicate(ctx, "t1", "vm1"); return err }, mapsrv.ErrInvalid},
	} {
		if err := tc.call(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Bodies and paths the typed client cannot send.
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/tasks", `{"nve": "nve1", "name": "x", "sir": "not-an-address"}`, 400},
		{"POST", "/v1/tasks", `{"bogus": 1}`, 400},
		{"GET", "/v1/nope", "", 404},
	} {
		if code := rawCall(t, tc.method, base+tc.path, tc.body); code != tc.want {
			t.Errorf("%s %s %s: HTTP %d, want %d", tc.method, tc.path, tc.body, code, tc.want)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metriclist.Check(t, "mapsrv", metrics) // promlint, and deploy/grafana/metrics/mapsrv.txt
	for _, want := range []string{`ila_mapsrv_registrations_total{result="accepted"} 1`, `ila_mapsrv_nve_applied_revision{nve="nve1"} 42`, `ila_mapsrv_auth_failures_total 0`, `ila_mapsrv_watch_lag_seconds_bucket`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// etcdctl-style read: readable JSON under /ila/.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	gr, err := cli.Get(t.Context(), mapsrv.TaskKey("prod", 7))
	cli.Close()
	if err != nil || len(gr.Kvs) != 1 {
		t.Fatalf("etcd get task key: %v, %v", gr, err)
	}
	var m map[string]any
	if err := json.Unmarshal(gr.Kvs[0].Value, &m); err != nil || m["nve"] != "nve1" || m["sir"] != "2001:db8::7" || m["lifetime"] != "6m40s" {
		t.Errorf("stored value %s: %v", gr.Kvs[0].Value, err)
	}

	// Restart on the same data dir: nothing lost.
	stop()
	start(t, api, args...)
	if rec, err := api1.Task(ctx, "t1", "vm1"); err != nil || rec.NVE != "nve1" || rec.Locator != 0xfd00000000000001 {
		t.Errorf("task after restart: %+v, %v", rec, err)
	}
	if ns, err := api1.NVEs(ctx); err != nil || len(ns) != 1 {
		t.Errorf("nves after restart: %+v, %v", ns, err)
	}
}

func TestRunBadFlags(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short.token")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--in-flight", "-1s"}, "--in-flight"},
		{[]string{"--flap-moves", "0"}, "--flap-moves"},
		{[]string{"--standby-claims", "maybe"}, "want expected, trust or off"},
		{[]string{"--standby-claims"}, "standby-claims"},
		{[]string{"--max-expect-ttl", "0s"}, "--max-expect-ttl"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--keys", "/nonexistent/keys", "--data-dir", t.TempDir(), "--api-addr", "127.0.0.1:0"}, "/nonexistent/keys"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--api-addr", "nocolon"}, "want HOST:PORT"},
		{[]string{"--dns-listen", "127.0.0.1:0", "--dns-zone", "bad zone"}, "--dns-listen"},
		{[]string{"--dns-listen", "127.0.0.1:0", "--dns-ttl", "-1s"}, "--dns-listen"},
		{[]string{"--api-addr", "[::]:7480"}, "not a loopback address: give --api-token-file"},
		{[]string{"--api-addr", "192.0.2.1:7480"}, "not a loopback address"},
		{[]string{"--api-addr", "127.0.0.1:0", "--api-token-file", short, "--data-dir", t.TempDir()}, "at least 16"},
		{[]string{"--api-addr", "127.0.0.1:0", "--api-token-file", "/nonexistent/token", "--data-dir", t.TempDir()}, "api token file"},
	} {
		var out bytes.Buffer
		// A case wrongly accepted would serve until the deadline, in a
		// temporary data directory (a later --data-dir wins).
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		args := append([]string{"--data-dir", filepath.Join(t.TempDir(), "d"), "--etcd-client-url", "unix://" + filepath.Join(os.TempDir(), "badflags-"+strconv.Itoa(os.Getpid())+".sock")}, tc.args...)
		err := run(ctx, args, &out)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestStandbyClaimsFlag: --standby-claims takes expected (the default),
// trust or off, and the former boolean values (true: trust, false: off).
func TestStandbyClaimsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want mapsrv.StandbyClaims
	}{
		{nil, mapsrv.StandbyClaimsExpected},
		{[]string{"--standby-claims=expected"}, mapsrv.StandbyClaimsExpected},
		{[]string{"--standby-claims=trust"}, mapsrv.StandbyClaimsTrust},
		{[]string{"--standby-claims=true"}, mapsrv.StandbyClaimsTrust},
		{[]string{"--standby-claims", "off"}, mapsrv.StandbyClaimsOff},
		{[]string{"--standby-claims=false"}, mapsrv.StandbyClaimsOff},
	} {
		c, err := parseFlags(tc.args, io.Discard)
		if err != nil {
			t.Errorf("parseFlags(%q): %v", tc.args, err)
			continue
		}
		if mapsrv.StandbyClaims(c.standbyClaims) != tc.want || c.maxExpectTTL != mapsrv.DefaultMaxExpectTTL {
			t.Errorf("parseFlags(%q): standby claims %v, max expect ttl %v; want %v, %v", tc.args, mapsrv.StandbyClaims(c.standbyClaims), c.maxExpectTTL, tc.want, mapsrv.DefaultMaxExpectTTL)
		}
	}
}

// TestRunAPIToken: with --api-token-file the API wants the token, on any
// address (here a non-loopback listen address is accepted because of it).
func TestRunAPIToken(t *testing.T) {
	dir, err := os.MkdirTemp("", "mapsrv") // short: the etcd socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tok := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tok, []byte("# test\nsecret-secret-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := freePort(t, "tcp")
	_, port, _ := net.SplitHostPort(api)
	listen := net.JoinHostPort("::", port) // all addresses: needs the token
	start(t, api, "--api-addr", listen, "--api-token-file", tok, "--data-dir", filepath.Join(dir, "data"), "--etcd-client-url", "unix://"+filepath.Join(dir, "c.sock"))
	if _, err := newClient(t, api, "").Tasks(t.Context()); !errors.Is(err, apiclient.ErrUnauthorized) {
		t.Errorf("without token: %v, want ErrUnauthorized", err)
	}
	if _, err := newClient(t, api, "secret-secret-secret-1").Tasks(t.Context()); err != nil {
		t.Errorf("with token: %v", err)
	}
}

func TestRunExternalEtcd(t *testing.T) {
	cli, eps := etcdtest.Start(t)
	api := freePort(t, "tcp")
	start(t, api, "--etcd-endpoints", strings.Join(eps, ","), "--api-addr", api, "--data-dir", filepath.Join(t.TempDir(), "unused"))
	if _, err := newClient(t, api, "").AddDomain(t.Context(), ila.Domain{Name: "prod", SIR: 0x20010db800000000, Csum: ila.CsumNoAction}); err != nil {
		t.Fatalf("add domain: %v", err)
	}
	gr, err := cli.Get(t.Context(), mapsrv.DomainKey("prod"))
	if err != nil || len(gr.Kvs) != 1 {
		t.Fatalf("domain in the external etcd: %v, %v", gr, err)
	}
}

// TestRunEmbeddedDNS: with --dns-listen mapsrv publishes the mapping in DNS
// itself (the single-machine default needs no separate dnsbridge).
func TestRunEmbeddedDNS(t *testing.T) {
	dir, err := os.MkdirTemp("", "mapsrv") // short: the etcd socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	api, dnsAddr := freePort(t, "tcp"), freePort(t, "udp")
	start(t, api, "--api-addr", api, "--data-dir", filepath.Join(dir, "data"), "--etcd-client-url", "unix://"+filepath.Join(dir, "c.sock"),
		"--dns-listen", dnsAddr, "--dns-zone", "lab.test.", "--dns-ttl", "2s")
	c := newClient(t, api, "")
	setup(t, c, ila.CsumNeutralMap)
	if _, err := c.Register(t.Context(), mapsrv.RegisterBody{NVE: "nve1", Tenant: "blue", Name: "web", SIR: netip.MustParseAddr("2001:db8::1:7")}); err != nil {
		t.Fatalf("register: %v", err)
	}
	q := new(dns.Msg).SetQuestion("web.blue.lab.test.", dns.TypeAAAA)
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, nw := range []string{"udp", "tcp"} {
			r, _, err := (&dns.Client{Net: nw, Timeout: time.Second}).Exchange(q, dnsAddr)
			if err != nil || len(r.Answer) != 1 {
				got = fmt.Sprint(r, err)
				continue
			}
			a, ok := r.Answer[0].(*dns.AAAA)
			if !ok || a.AAAA.String() != "2001:db8::1:7" || a.Hdr.Ttl != 2 {
				t.Fatalf("%s answer %v, want AAAA 2001:db8::1:7 with TTL 2", nw, r.Answer[0])
			}
			if nw == "tcp" {
				return
			}
		}
	}
	t.Fatalf("no answer for web.blue.lab.test. AAAA: %s", got)
}
