package apiclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

var (
	sirPrefix = ila.SIRPrefix(0x2001_0db8_0000_0000)
	locA      = ila.Locator(0xfd00_0000_0000_0001)
	locB      = ila.Locator(0xfd00_0000_0000_0002)
)

// server is a mapping service over an embedded etcd behind its HTTP API.
type server struct {
	url string
	svc *mapsrv.Service
}

// start runs mapsrv's API over a real embedded etcd, with its watch.
func start(t *testing.T, cfg mapsrv.Config, opts mapsrv.APIOptions) server {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	cfg.Store = etcdstore.New(cli)
	svc, err := mapsrv.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Watch == nil {
		opts.Watch = etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}).Watch
	}
	srv := httptest.NewServer(mapsrv.NewAPI(svc, opts))
	t.Cleanup(srv.Close)
	return server{url: srv.URL, svc: svc}
}

func newClient(t *testing.T, cfg apiclient.Config) *apiclient.Client {
	t.Helper()
	c, err := apiclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup adds domain prod and NVEs a and b through c.
func setup(t *testing.T, c *apiclient.Client) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sirPrefix, Csum: ila.CsumNeutralMap}); err != nil {
		t.Fatal(err)
	}
	for name, loc := range map[string]ila.Locator{"a": locA, "b": locB} {
		if _, err := c.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: name, Locators: []ila.Locator{loc}, Underlay: netip.MustParseAddr("fd99::1")}}); err != nil {
			t.Fatal(err)
		}
	}
}

// watcher collects the event types a Watch delivers.
type watcher struct {
	mu     sync.Mutex
	events []ila.Event
	done   chan error
}

func watch(ctx context.Context, c *apiclient.Client) *watcher {
	w := &watcher{done: make(chan error, 1)}
	go func() {
		w.done <- c.Watch(ctx, func(ev ila.Event) {
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
		})
	}()
	return w
}

// wait waits until at least n events are collected and the last has type
// typ (a type that occurs more than once in a sequence needs the count).
func (w *watcher) wait(t *testing.T, typ ila.EventType, n int) []ila.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		evs := append([]ila.Event(nil), w.events...)
		w.mu.Unlock()
		if len(evs) >= n && evs[len(evs)-1].Type == typ {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event within 10s; got %d events", typ, len(evs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func types(evs []ila.Event) []string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Type.String())
	}
	return s
}

func TestClient(t *testing.T) {
	srv := start(t, mapsrv.Config{}, mapsrv.APIOptions{Version: "v9"})
	c := newClient(t, apiclient.Config{URL: srv.url + "/"})
	ctx := t.Context()

	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	if v, err := c.Version(ctx); err != nil || v.Version != "v9" || !strings.HasPrefix(v.Go, "go") {
		t.Errorf("Version = %+v, %v", v, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w := watch(wctx, c)
	w.wait(t, ila.EventSynced, 1)

	setup(t, c)
	ds, err := c.Domains(ctx)
	if err != nil || len(ds) != 1 || ds[0].Name != "prod" || ds[0].SIR != sirPrefix {
		t.Errorf("Domains = %+v, %v", ds, err)
	}
	ns, err := c.NVEs(ctx)
	if err != nil || len(ns) != 2 {
		t.Errorf("NVEs = %+v, %v", ns, err)
	}
	if n, err := c.NVE(ctx, "b"); err != nil || n.Name != "b" || n.Locators[0] != locB {
		t.Errorf("NVE(b) = %+v, %v", n, err)
	}

	// A name that needs escaping in a path.
	const name = "web%1?x#y"
	rec, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", Tenant: "t", Name: name, SIR: netip.MustParseAddr("2001:db8::5"), MAC: ila.MAC{2, 0, 0, 0, 0, 5}, Lifetime: ila.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rec.NVE != "a" || rec.Locator != locA || rec.Version != 1 || rec.Name != name {
		t.Errorf("Register = %+v", rec)
	}
	got, err := c.Task(ctx, "t", name)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec.Task, got.Task, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("Task (-registered +got):\n%s", diff)
	}
	moved, err := c.Move(ctx, "t", name, mapsrv.MoveBody{To: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if moved.NVE != "b" || moved.Locator != locB || moved.Version != 2 || moved.Updated.IsZero() || len(moved.Previous) != 1 {
		t.Errorf("Move = %+v", moved)
	}
	if m, err := c.Mapping(ctx, "prod", rec.Identifier); err != nil || m.Name != name || m.NVE != "b" {
		t.Errorf("Mapping = %+v, %v", m, err)
	}
	unnamed, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", SIR: netip.MustParseAddr("2001:db8::6")})
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := c.Tasks(ctx); err != nil || len(ts) != 2 {
		t.Errorf("Tasks = %+v, %v", ts, err)
	}
	if err := c.DeleteMapping(ctx, "prod", unnamed.Identifier); err != nil {
		t.Errorf("DeleteMapping: %v", err)
	}
	if err := c.Deregister(ctx, "t", name); err != nil {
		t.Errorf("Deregister: %v", err)
	}
	if ts, err := c.Tasks(ctx); err != nil || ts == nil || len(ts) != 0 {
		t.Errorf("Tasks after deregistering = %#v, %v; want an empty list", ts, err)
	}

	want := []string{"synced", "domain-upsert", "nve-upsert", "nve-upsert",
		"nve-upsert", "task-upsert", // the registration pins a's locator
		"nve-upsert", "task-upsert", // the move pins b's locator
		"task-upsert", "task-delete", // the unnamed task
		"task-delete",
	}
	evs := w.wait(t, ila.EventTaskDelete, len(want))
	if diff := cmp.Diff(want, types(evs)); diff != "" {
		t.Errorf("watch events (-want +got):\n%s", diff)
	}
	if ev := evs[7]; ev.Task == nil || ev.Task.NVE != "b" || ev.Task.Version != 2 || ev.Revision == 0 {
		t.Errorf("move event %+v", ev)
	}
	wcancel()
	if err := <-w.done; err != nil {
		t.Errorf("Watch after cancel: %v, want nil", err)
	}
}

// TestErrors: every error answer of a real mapsrv matches its sentinel,
// and only that one.
func TestErrors(t *testing.T) {
	srv := start(t, mapsrv.Config{FlapMoves: 2, FlapWindow: time.Hour}, mapsrv.APIOptions{})
	c := newClient(t, apiclient.Config{URL: srv.url})
	ctx := t.Context()
	setup(t, c)
	if _, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", Tenant: "t", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", Tenant: "t", Name: "flappy", SIR: netip.MustParseAddr("2001:db8::2")}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"b", "a"} {
		if _, err := c.Move(ctx, "t", "flappy", mapsrv.MoveBody{To: to}); err != nil {
			t.Fatal(err)
		}
	}
	plain := httptest.NewServer(mapsrv.NewAPI(srv.svc, mapsrv.APIOptions{}))
	defer plain.Close()
	noWatch := newClient(t, apiclient.Config{URL: plain.URL})
	sick := httptest.NewServer(mapsrv.NewAPI(srv.svc, mapsrv.APIOptions{Health: func(context.Context) error { return errors.New("store down") }}))
	defer sick.Close()

	sentinels := map[string]error{
		"invalid": mapsrv.ErrInvalid, "unauthorized": apiclient.ErrUnauthorized, "forbidden": mapsrv.ErrForbidden,
		"not_found": mapsrv.ErrNotFound, "conflict": mapsrv.ErrConflict, "duplicate": mapsrv.ErrDuplicate,
		"unavailable": apiclient.ErrUnavailable,
	}
	for _, tc := range []struct {
		name   string
		call   func() error
		code   string
		status int
		msg    string // in Error()
	}{
		{"bad sir", func() error {
			_, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", Name: "x", SIR: netip.MustParseAddr("2001:db8::1:0")})
			return err
		}, "invalid", 400, "0x0000"},
		{"move to the same nve", func() error { _, err := c.Move(ctx, "t", "vm1", mapsrv.MoveBody{To: "a"}); return err }, "invalid", 400, "already on"},
		{"clear a task not duplicate", func() error { _, err := c.ClearDuplicate(ctx, "t", "vm1"); return err }, "invalid", 400, "not duplicate"},
		{"no such task", func() error { _, err := c.Task(ctx, "t", "ghost"); return err }, "not_found", 404, "not found"},
		{"no such nve", func() error { _, err := c.NVE(ctx, "zz"); return err }, "not_found", 404, "not found"},
		{"move to no such nve", func() error { _, err := c.Move(ctx, "t", "vm1", mapsrv.MoveBody{To: "nowhere"}); return err }, "not_found", 404, "not found"},
		{"deregister twice", func() error { return c.Deregister(ctx, "t", "ghost") }, "not_found", 404, "not found"},
		{"no such mapping", func() error { _, err := c.Mapping(ctx, "prod", 0x1234); return err }, "not_found", 404, "not found"},
		{"prefix of another domain", func() error {
			_, err := c.AddDomain(ctx, ila.Domain{Name: "other", SIR: sirPrefix})
			return err
		}, "conflict", 409, "already belongs to domain prod"},
		{"locator of another nve", func() error {
			_, err := c.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: "c", Locators: []ila.Locator{locA}, Underlay: netip.MustParseAddr("fd99::3")}})
			return err
		}, "conflict", 409, "belongs to nve a"},
		{"name of another task", func() error {
			_, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", Tenant: "t", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::8")})
			return err
		}, "conflict", 409, ""},
		{"flap damped", func() error { _, err := c.Move(ctx, "t", "flappy", mapsrv.MoveBody{To: "b"}); return err }, "duplicate", 409, "flap damping"},
		{"flap damped, checked", func() error {
			_, err := c.Move(ctx, "t", "flappy", mapsrv.MoveBody{To: "b", Check: true})
			return err
		}, "duplicate", 409, "flap damping"},
		{"locator not the nve's", func() error {
			_, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", SIR: netip.MustParseAddr("2001:db8::3"), Locator: locB})
			return err
		}, "forbidden", 403, ""},
		{"no watch source", func() error { return noWatch.Watch(ctx, func(ila.Event) {}) }, "unavailable", 501, "no watch source"},
		{"store down", func() error { return newClient(t, apiclient.Config{URL: sick.URL}).Health(ctx) }, "unavailable", 503, "store down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *apiclient.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T), want an *apiclient.Error", err, err)
			}
			if ae.Code != tc.code || ae.Status != tc.status {
				t.Errorf("code %q HTTP %d, want %q HTTP %d", ae.Code, ae.Status, tc.code, tc.status)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", tc.status)) {
				t.Errorf("error %q does not say %q and HTTP %d", err, tc.msg, tc.status)
			}
			for code, s := range sentinels {
				if got, want := errors.Is(err, s), code == tc.code; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got, want)
				}
			}
		})
	}
	// The refusals changed nothing: the task stays where it was.
	if rec, err := c.Task(ctx, "t", "flappy"); err != nil || rec.NVE != "a" || rec.State != ila.StateActive {
		t.Errorf("flappy after the refusals: %s on %s, %v; want active on a", rec.State, rec.NVE, err)
	}
}

// TestToken: the bearer token goes with every call; without it the API's
// 401 is ErrUnauthorized, watch included, and health needs none.
func TestToken(t *testing.T) {
	const tok = "ops-token-0123456789"
	srv := start(t, mapsrv.Config{}, mapsrv.APIOptions{Tokens: []string{tok}})
	ctx := t.Context()
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{{"none", "", false}, {"wrong", "ops-token-9876543210", false}, {"right", tok, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, apiclient.Config{URL: srv.url, Token: tc.token})
			if err := c.Health(ctx); err != nil {
				t.Errorf("Health: %v", err)
			}
			_, err := c.Domains(ctx)
			if (err == nil) != tc.ok || (!tc.ok && !errors.Is(err, apiclient.ErrUnauthorized)) {
				t.Errorf("Domains: %v, want ok=%v or ErrUnauthorized", err, tc.ok)
			}
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			err = c.Watch(wctx, func(ila.Event) {})
			if tc.ok && err != nil {
				t.Errorf("Watch: %v, want nil when its context ends", err)
			}
			if !tc.ok && (!errors.Is(err, apiclient.ErrUnauthorized) || !strings.Contains(err.Error(), "HTTP 401")) {
				t.Errorf("Watch: %v, want ErrUnauthorized", err)
			}
		})
	}
}

// TestNotMapsrv: answers that do not come from mapsrv (a proxy, a wrong
// URL, a dead server) give clear errors and only the sentinels their
// status makes unambiguous.
func TestNotMapsrv(t *testing.T) {
	block := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/domains", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream\nnot answering", http.StatusBadGateway)
	})
	mux.HandleFunc("/v1/nves", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such page", http.StatusNotFound)
	})
	mux.HandleFunc("/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>a login page</html>"))
	})
	mux.HandleFunc("/v1/health", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	mux.HandleFunc("/v1/version", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-block:
		}
	})
	mux.HandleFunc("/v1/watch", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"type":"domain-upsert","revision":3,"domain":{"name":"prod","sir_prefix":"2001:db8::/64"}}` + "\n"))
		w.Write([]byte(`{"type":"synced","revision":3}` + "\n"))
		// Returning closes the stream.
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(block)
	ctx := t.Context()
	c := newClient(t, apiclient.Config{URL: srv.URL, Timeout: 100 * time.Millisecond})

	_, err := c.Domains(ctx)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "" || !errors.Is(err, apiclient.ErrUnavailable) ||
		err.Error() != "mapsrv api: GET /v1/domains: HTTP 502: upstream not answering" {
		t.Errorf("502 from a proxy: %v", err)
	}
	_, err = c.NVEs(ctx)
	if !errors.As(err, &ae) || ae.Status != 404 || errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("404 without mapsrv's body: %v; it must not claim mapsrv.ErrNotFound", err)
	}
	if _, err = c.Tasks(ctx); err == nil || !strings.Contains(err.Error(), "decode answer") || errors.As(err, &ae) {
		t.Errorf("HTML answer: %v, want a decode error", err)
	}
	if err = c.Health(ctx); !errors.Is(err, apiclient.ErrUnauthorized) || err.Error() != "mapsrv api: GET /v1/health: HTTP 401" {
		t.Errorf("bare 401: %v", err)
	}
	if _, err = c.Version(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call past Config.Timeout: %v, want context.DeadlineExceeded", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = c.Domains(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("a call with a cancelled context: %v, want context.Canceled", err)
	}

	var got []string
	err = c.Watch(ctx, func(ev ila.Event) { got = append(got, ev.Type.String()) })
	if !errors.Is(err, apiclient.ErrUnavailable) || !strings.Contains(err.Error(), "stream closed") {
		t.Errorf("Watch of a stream the server closes: %v, want ErrUnavailable", err)
	}
	if diff := cmp.Diff([]string{"domain-upsert", "synced"}, got); diff != "" {
		t.Errorf("events before the close (-want +got):\n%s", diff)
	}
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"type":"synced","revision":3}` + "\n" + `{"type":"task-teleport"}` + "\n"))
	}))
	defer garbage.Close()
	got = nil
	err = newClient(t, apiclient.Config{URL: garbage.URL}).Watch(ctx, func(ev ila.Event) { got = append(got, ev.Type.String()) })
	if err == nil || !strings.Contains(err.Error(), "decode event") || !strings.Contains(err.Error(), "task-teleport") || len(got) != 1 {
		t.Errorf("Watch of a stream with an unknown event: %v after %v, want a decode error after synced", err, got)
	}

	srv.Close()
	if _, err := c.Domains(ctx); err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), "mapsrv api") {
		t.Errorf("dead server: %v", err)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		cfg apiclient.Config
		ok  bool
	}{
		{apiclient.Config{URL: "http://127.0.0.1:7480"}, true},
		{apiclient.Config{URL: "https://[fd00::2]:7480/"}, true},
		{apiclient.Config{URL: "http://mapsrv.example:7480", Token: "abc"}, true},
		{apiclient.Config{URL: ""}, false},
		{apiclient.Config{URL: "127.0.0.1:7480"}, false},
		{apiclient.Config{URL: "ftp://127.0.0.1"}, false},
		{apiclient.Config{URL: "http://"}, false},
		{apiclient.Config{URL: "http://h:1?x=1"}, false},
		{apiclient.Config{URL: "http://h:1", Token: "two words"}, false},
	} {
		_, err := apiclient.New(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("New(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
	c := newClient(t, apiclient.Config{URL: "http://127.0.0.1:1"})
	for name, call := range map[string]func() error{
		"task":     func() error { _, err := c.Task(t.Context(), "", "x"); return err },
		"move":     func() error { _, err := c.Move(t.Context(), "t", "", mapsrv.MoveBody{To: "a"}); return err },
		"nve":      func() error { _, err := c.NVE(t.Context(), ""); return err },
		"mapping":  func() error { _, err := c.Mapping(t.Context(), "", 1); return err },
		"deregist": func() error { return c.Deregister(t.Context(), "", "") },
	} {
		if err := call(); !errors.Is(err, mapsrv.ErrInvalid) {
			t.Errorf("%s with an empty name: %v, want mapsrv.ErrInvalid before any request", name, err)
		}
	}
}

// TestExpect: Expect records the expectation of a move (named in the
// task), Unexpect drops it, and mapsrv's refusals come back as their
// sentinels.
func TestExpect(t *testing.T) {
	srv := start(t, mapsrv.Config{}, mapsrv.APIOptions{})
	c := newClient(t, apiclient.Config{URL: srv.url})
	ctx := t.Context()
	setup(t, c)
	if _, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "a", Tenant: "t", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::5")}); err != nil {
		t.Fatal(err)
	}
	rec, err := c.Expect(ctx, "t", "vm1", mapsrv.ExpectBody{NVE: "b", TTL: ila.Duration(30 * time.Second)})
	if err != nil || rec.Expect == nil || rec.Expect.NVE != "b" || rec.Expect.Until.Sub(rec.Expect.Since) != 30*time.Second {
		t.Fatalf("Expect = %+v, %v", rec.Expect, err)
	}
	if err := c.Unexpect(ctx, "t", "vm1"); err != nil {
		t.Fatalf("Unexpect: %v", err)
	}
	if got, err := c.Task(ctx, "t", "vm1"); err != nil || got.Expect != nil {
		t.Errorf("after Unexpect: %+v, %v", got.Expect, err)
	}
	if _, err := c.Expect(ctx, "t", "vm1", mapsrv.ExpectBody{NVE: "zz"}); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("Expect on an unknown nve: %v, want ErrNotFound", err)
	}
	if _, err := c.Expect(ctx, "t", "vm1", mapsrv.ExpectBody{NVE: "b", TTL: ila.Duration(time.Hour)}); !errors.Is(err, mapsrv.ErrInvalid) {
		t.Errorf("Expect for an hour: %v, want ErrInvalid", err)
	}
}
