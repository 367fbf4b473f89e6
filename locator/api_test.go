package locator_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// serveAPI serves h on a unix socket until the test ends and returns the
// socket's path.
func serveAPI(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "ilad.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestLocalAPI(t *testing.T) {
	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	src.SetDomain(dom)
	a := newAgent(t, "", dp, src, func(c *locator.Config) { c.StateFile = filepath.Join(t.TempDir(), "tasks.json") })
	stop := run(t, a)
	defer stop()
	c, err := locator.NewClient(serveAPI(t, a.Handler()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	web := spec("web", "veth-web", 0x1001)
	st, err := c.Attach(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	web.Domain = "prod" // filled in from the store
	if diff := cmp.Diff(web, st.TaskSpec, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("attach answer (-want +got):\n%s", diff)
	}
	if st.Locator != locA || st.Domain != "prod" {
		t.Errorf("attach answer locator %v domain %q", st.Locator, st.Domain)
	}
	var apiErr *locator.APIError
	for _, tc := range []struct {
		name string
		spec locator.TaskSpec
		code int
		is   error
	}{
		{"same address elsewhere", spec("web2", "veth-w2", 0x1001), http.StatusConflict, locator.ErrExists},
		{"bad spec", locator.TaskSpec{Name: "x"}, http.StatusBadRequest, nil},
	} {
		_, err := c.Attach(ctx, tc.spec)
		if !errors.As(err, &apiErr) || apiErr.Status != tc.code {
			t.Errorf("%s: %v, want HTTP %d", tc.name, err, tc.code)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v, want errors.Is %v", tc.name, err, tc.is)
		}
		if tc.is == nil && (errors.Is(err, locator.ErrExists) || errors.Is(err, locator.ErrNotFound)) {
			t.Errorf("%s: %v matches a sentinel of another status", tc.name, err)
		}
	}
	ts, err := c.Tasks(ctx)
	if err != nil || len(ts) != 1 || ts[0].Name != "web" {
		t.Errorf("Tasks = %+v, %v", ts, err)
	}
	for _, name := range []string{"nope", "50%?#"} { // the second needs escaping in the path
		if err := c.Detach(ctx, name); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || !errors.Is(err, locator.ErrNotFound) {
			t.Errorf("detach unknown %q: %v, want HTTP 404 and ErrNotFound", name, err)
		}
	}
	if err := c.Detach(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if n := len(dp.LocalEntries()); n != 0 {
		t.Errorf("%d local entries after detach", n)
	}
	if _, err := locator.NewClient("nohostport"); err == nil {
		t.Error("NewClient accepted a bad address")
	}
}

// TestLocalAPIRejected: the mapping service's refusal comes back through
// the client as the *RejectedError the Agent returned, with its reason; an
// answer from outside the API matches no sentinel.
func TestLocalAPIRejected(t *testing.T) {
	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	src.SetDomain(dom)
	reg := &locatortest.Registrar{Err: &locator.RejectedError{Reason: "identifier owned by another NVE"}}
	a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg })
	stop := run(t, a)
	defer stop()
	mux := http.NewServeMux()
	mux.Handle("/v1/", a.Handler())
	mux.HandleFunc("/v1/stats", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }) // an older ilad
	c, err := locator.NewClient("unix:" + serveAPI(t, mux))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Attach(t.Context(), spec("web", "veth-web", 0x1001))
	var rej *locator.RejectedError
	if !errors.As(err, &rej) || rej.Reason != "identifier owned by another NVE" {
		t.Errorf("attach refused by mapsrv: %v (%#v), want a RejectedError with mapsrv's reason", err, rej)
	}
	if !strings.Contains(err.Error(), "HTTP 422") || errors.Is(err, locator.ErrExists) {
		t.Errorf("attach refused by mapsrv: %v", err)
	}
	_, err = c.Stats(t.Context())
	var apiErr *locator.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || errors.Is(err, locator.ErrNotFound) {
		t.Errorf("unknown endpoint: %v, want HTTP 404 that is not ErrNotFound (no such task)", err)
	}
}

func TestStateFileRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		state := filepath.Join(t.TempDir(), "tasks.json")
		static := spec("db", "veth-db", 0x1005)
		cfg := func(c *locator.Config) { c.StateFile = state; c.Tasks = []locator.TaskSpec{static} }
		a := newAgent(t, "", dp, src, cfg)
		stop := run(t, a)
		synctest.Wait()
		if err := a.Attach(t.Context(), spec("web", "veth-web", 0x1001)); err != nil {
			t.Fatal(err)
		}
		// A local entry left by a task detached while ilad was down.
		dp.UpsertLocal(locator.Local{SIR: sirP, Identifier: 0x1009, Ifindex: 9})
		stop()
		if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), `"web"`) {
			t.Fatalf("state file: %s, %v", b, err)
		}
		// The restarted agent attaches both again and prunes the stale one.
		b := newAgent(t, "", dp, src, cfg)
		stop = run(t, b)
		defer stop()
		synctest.Wait()
		var names []string
		for _, s := range b.Tasks() {
			names = append(names, s.Name)
		}
		if diff := cmp.Diff([]string{"db", "web"}, names); diff != "" {
			t.Errorf("tasks after restart (-want +got):\n%s", diff)
		}
		if _, ok := dp.LocalEntries()[locatortest.Key{SIR: sirP, ID: 0x1009}]; ok {
			t.Error("stale local entry kept")
		}
		if n := len(dp.LocalEntries()); n != 2 {
			t.Errorf("%d local entries, want 2", n)
		}
	})
}

func TestRestoredTaskMovedWhileDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: time.Minute}
		state := filepath.Join(t.TempDir(), "tasks.json")
		cfg := func(c *locator.Config) { c.StateFile = state; c.Registrar = reg }
		a := newAgent(t, "", dp, src, cfg)
		stop := run(t, a)
		synctest.Wait()
		if err := a.Attach(t.Context(), spec("web", "veth-web", 0x1001)); err != nil {
			t.Fatal(err)
		}
		stop()
		// While the agent is down, the task moves to nve-b.
		src.SetTask(task(0x1001, "nve-b", locB))
		n := len(reg.Registrations())
		b := newAgent(t, "", dp, src, cfg)
		stop = run(t, b)
		defer stop()
		time.Sleep(time.Second)
		synctest.Wait()
		if got := len(reg.Registrations()); got != n {
			t.Errorf("restored task that moved away registered again (%d registrations, want %d)", got, n)
		}
		if ts := b.Tasks(); len(ts) != 0 {
			t.Errorf("tasks after restart: %+v, want none", ts)
		}
		if n := len(dp.LocalEntries()); n != 0 {
			t.Errorf("%d local entries left", n)
		}
	})
}

// gatedSource holds the agent's watch (its first list) until gate closes.
type gatedSource struct {
	*locatortest.Source
	gate chan struct{}
}

func (g *gatedSource) Watch(ctx context.Context, fn func(ila.Event)) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Source.Watch(ctx, fn)
}

// TestStandbyAttachWaitsForRestoredTask: a restarted agent restores a task
// from its state file that moved away while it was down; a standby attach
// of that task before the store's first list came used to be a silent
// no-op (the restored copy was detached a moment later, and no standby was
// left: the failover cycles' "standby not recorded"). It now waits for the
// restored copy's fate, then attaches the standby.
func TestStandbyAttachWaitsForRestoredTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: time.Minute}
		state := filepath.Join(t.TempDir(), "tasks.json")
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.StateFile = state; c.Registrar = reg })
		stop := run(t, a)
		synctest.Wait()
		web := spec("web", "veth-web", 0x1001)
		if err := a.Attach(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		stop()
		src.SetTask(task(0x1001, "nve-b", locB)) // failed over while the agent was down
		gs := &gatedSource{Source: src, gate: make(chan struct{})}
		b := newAgent(t, "", dp, gs, func(c *locator.Config) { c.StateFile = state; c.Registrar = reg })
		stop = run(t, b)
		defer stop()
		synctest.Wait()
		if ts := b.Tasks(); len(ts) != 1 || ts[0].Standby {
			t.Fatalf("before the first list: %+v, want the restored task, active", ts)
		}
		sb := web
		sb.Standby = true
		done := make(chan error, 1)
		go func() { done <- b.Attach(t.Context(), sb) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("standby attach returned before the restored copy settled: %v", err)
		default:
		}
		close(gs.gate)
		synctest.Wait()
		if err := <-done; err != nil {
			t.Fatalf("standby attach: %v", err)
		}
		time.Sleep(time.Second) // the standby's registration loop
		synctest.Wait()
		ts := b.Tasks()
		if len(ts) != 1 || !ts[0].Standby {
			t.Fatalf("after the first list: %+v, want web as a standby", ts)
		}
		var standby int
		for _, r := range reg.Registrations() {
			if r.Name == "web" && r.Standby && r.Lifetime > 0 {
				standby++
			}
		}
		if standby == 0 {
			t.Errorf("no standby registration of web sent: %+v", reg.Registrations())
		}
	})
}

// TestStandbyAttachOfActiveTask: a standby attach of a task active (and
// shown here by the store) on this NVE is refused with ErrExists (409),
// not taken as done.
func TestStandbyAttachOfActiveTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp, src := locatortest.NewDatapath(), locatortest.NewSource()
		src.SetDomain(dom)
		reg := &locatortest.Registrar{Grant: time.Minute}
		reg.OnRegister = func(r locator.Registration) {
			if r.Lifetime > 0 && !r.Standby {
				src.SetTask(task(0x1001, "nve-a", locA))
			}
		}
		a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar = reg })
		stop := run(t, a)
		defer stop()
		synctest.Wait()
		web := spec("web", "veth-web", 0x1001)
		if err := a.Attach(t.Context(), web); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		sb := web
		sb.Standby = true
		if err := a.Attach(t.Context(), sb); !errors.Is(err, locator.ErrExists) {
			t.Errorf("standby attach of an active task: %v, want ErrExists", err)
		}
		if err := a.Attach(t.Context(), web); err != nil {
			t.Errorf("the same attach again: %v, want none (idempotent)", err)
		}
		if ts := a.Tasks(); len(ts) != 1 || ts[0].Standby || !ts[0].Confirmed {
			t.Errorf("tasks: %+v, want web active and confirmed", ts)
		}
	})
}
