package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func freePort(t *testing.T, network string) string {
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
func start(t *testing.T, api string, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, logs) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + api + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
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

func call(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, b, err)
		}
	}
	return resp.StatusCode
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

	if code := call(t, "POST", base+"/v1/domains", ila.Domain{Name: "prod", SIR: 0x20010db800000000, Csum: ila.CsumNeutralMap}, nil); code != 201 {
		t.Fatalf("add domain: HTTP %d", code)
	}
	if code := call(t, "POST", base+"/v1/nves", mapsrv.NVERecord{NVE: ila.NVE{Name: "nve1", Locators: []ila.Locator{0xfd00000000000001}, Underlay: netip.MustParseAddr("fd99::1")}}, nil); code != 201 {
		t.Fatalf("add nve: HTTP %d", code)
	}
	// Register over UDP.
	c := &regproto.Client{Server: netip.MustParseAddrPort(reg), KeyID: 2, Secret: keys[2].Secret, Keys: keys, ServerKeyID: 1}
	defer c.Close()
	rep, err := c.Do(t.Context(), &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::7")}, Lifetime: 100})
	if err != nil || rep.Err() != nil {
		t.Fatalf("udp registration: %+v, %v", rep, err)
	}
	// The API refuses bad input with clear errors.
	for _, tc := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/v1/tasks", map[string]any{"nve": "nve1", "name": "x", "sir": "not-an-address"}, 400},
		{"POST", "/v1/tasks", map[string]any{"nve": "nve1", "name": "x", "sir": "2001:db8::1:0"}, 400},
		{"POST", "/v1/tasks", map[string]any{"nve": "nve1", "name": "vm1", "tenant": "t1", "sir": "2001:db8::8"}, 409},
		{"POST", "/v1/tasks", map[string]any{"bogus": 1}, 400},
		{"GET", "/v1/tasks/t1/nobody", nil, 404},
		{"POST", "/v1/tasks/t1/vm1/move", map[string]any{"to": "nowhere"}, 404},
		{"POST", "/v1/tasks/t1/vm1/clear-duplicate", nil, 400},
		{"GET", "/v1/nope", nil, 404},
	} {
		if code := call(t, tc.method, base+tc.path, tc.body, nil); code != tc.want {
			t.Errorf("%s %s %v: HTTP %d, want %d", tc.method, tc.path, tc.body, code, tc.want)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ila_mapsrv_registrations_total{result="accepted"} 1`, `ila_mapsrv_auth_failures_total 0`, `ila_mapsrv_watch_lag_seconds_bucket`} {
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
	var rec mapsrv.TaskRecord
	if code := call(t, "GET", base+"/v1/tasks/t1/vm1", nil, &rec); code != 200 || rec.NVE != "nve1" || rec.Locator != 0xfd00000000000001 {
		t.Errorf("task after restart: HTTP %d %+v", code, rec)
	}
	var ns []mapsrv.NVERecord
	if code := call(t, "GET", base+"/v1/nves", nil, &ns); code != 200 || len(ns) != 1 {
		t.Errorf("nves after restart: HTTP %d %+v", code, ns)
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
	get := func(auth string) int {
		req, _ := http.NewRequest("GET", "http://"+api+"/v1/tasks", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != 401 {
		t.Errorf("without token: HTTP %d, want 401", code)
	}
	if code := get("Bearer secret-secret-secret-1"); code != 200 {
		t.Errorf("with token: HTTP %d, want 200", code)
	}
}

func TestRunExternalEtcd(t *testing.T) {
	cli, eps := etcdtest.Start(t)
	api := freePort(t, "tcp")
	start(t, api, "--etcd-endpoints", strings.Join(eps, ","), "--api-addr", api, "--data-dir", filepath.Join(t.TempDir(), "unused"))
	base := "http://" + api
	if code := call(t, "POST", base+"/v1/domains", ila.Domain{Name: "prod", SIR: 0x20010db800000000, Csum: ila.CsumNoAction}, nil); code != 201 {
		t.Fatalf("add domain: HTTP %d", code)
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
	base := "http://" + api
	if code := call(t, "POST", base+"/v1/domains", ila.Domain{Name: "prod", SIR: 0x20010db800000000, Csum: ila.CsumNeutralMap}, nil); code != 201 {
		t.Fatalf("add domain: HTTP %d", code)
	}
	if code := call(t, "POST", base+"/v1/nves", mapsrv.NVERecord{NVE: ila.NVE{Name: "nve1", Locators: []ila.Locator{0xfd00000000000001}, Underlay: netip.MustParseAddr("fd99::1")}}, nil); code != 201 {
		t.Fatalf("add nve: HTTP %d", code)
	}
	if code := call(t, "POST", base+"/v1/tasks", map[string]any{"nve": "nve1", "tenant": "blue", "name": "web", "sir": "2001:db8::1:7"}, nil); code != 200 {
		t.Fatalf("register: HTTP %d", code)
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
