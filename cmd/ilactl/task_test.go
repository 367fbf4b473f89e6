package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

// startMapsrv runs the mapping service's API over an embedded etcd and
// returns its URL.
func startMapsrv(t *testing.T) string {
	t.Helper()
	cli, _ := etcdtest.Start(t)
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli)})
	if err != nil {
		t.Fatal(err)
	}
	w := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{})
	srv := httptest.NewServer(mapsrv.NewAPI(svc, mapsrv.APIOptions{Watch: w.Watch}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestMapsrvCommands(t *testing.T) {
	api := startMapsrv(t)
	cmd := func(args ...string) (string, error) {
		t.Helper()
		return ilactl(t, append([]string{"--api", api}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := cmd(args...)
		if err != nil {
			t.Fatalf("ilactl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	// A live watch from the start.
	wctx, wcancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	wdone := make(chan error, 1)
	go func() {
		wdone <- run(wctx, []string{"--api", api, "watch", "-o", "json"}, pw, io.Discard)
		pw.Close()
	}()
	var mu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	// Wait until the watch has listed the (empty) store, so that every
	// change below arrives as an event after "synced".
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(lines)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("watch sent nothing within 10s")
		}
	}

	out := must("domain", "add", "prod", "--sir-prefix", "2001:db8::/64", "--csum", "neutral-map")
	if !strings.Contains(out, "2001:db8::/64") || !strings.Contains(out, "neutral-map") {
		t.Errorf("domain add output:\n%s", out)
	}
	must("nve", "add", "a", "--locator", "fd00:0:0:1", "--underlay", "fd99::1", "--reg-addr", "[fd99::1]:7482")
	must("nve", "add", "b", "--locator", "prod=fd00:0:0:2", "--underlay", "fd99::2")
	var nves []mapsrv.NVERecord
	if err := json.Unmarshal([]byte(must("nve", "list", "-o", "json")), &nves); err != nil || len(nves) != 2 {
		t.Fatalf("nve list -o json: %v %+v", err, nves)
	}
	out = must("nve", "list")
	if !strings.Contains(out, "prod=fd00:0:0:2") || !strings.Contains(out, "[fd99::1]:7482") {
		t.Errorf("nve list table:\n%s", out)
	}

	must("task", "register", "vm1", "--tenant", "t", "--nve", "a", "--sir", "2001:db8::5", "--mac", "02:00:00:00:00:05", "--lifetime", "1h")
	must("task", "register", "v4", "--tenant", "t", "--nve", "b", "--ipv4", "10.0.0.9", "--vni", "9")
	var rec mapsrv.TaskRecord
	if err := json.Unmarshal([]byte(must("task", "get", "vm1", "--tenant", "t", "-o", "json")), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Locator.String() != "fd00:0:0:1" || rec.NVE != "a" || rec.MAC.String() != "02:00:00:00:00:05" || rec.Version != 1 {
		t.Errorf("task get: %+v", rec)
	}
	// A check answers with the record as the move would make it and
	// changes nothing.
	if out := must("task", "move", "vm1", "--tenant", "t", "--to", "b", "--check", "-o", "json"); !strings.Contains(out, `"nve": "b"`) {
		t.Errorf("task move --check output:\n%s", out)
	}
	if out := must("task", "get", "vm1", "--tenant", "t", "-o", "json"); !strings.Contains(out, `"nve": "a"`) || !strings.Contains(out, `"version": 1`) {
		t.Errorf("task get after a move check:\n%s", out)
	}
	// The orchestrator's expectation of a move (before a live
	// migration): shown in the record, dropped by --cancel.
	rec = mapsrv.TaskRecord{}
	if err := json.Unmarshal([]byte(must("expect", "vm1", "--tenant", "t", "--nve", "b", "--ttl", "90s", "-o", "json")), &rec); err != nil || rec.Expect == nil || rec.Expect.NVE != "b" || rec.Expect.Until.Sub(rec.Expect.Since) != 90*time.Second {
		t.Errorf("expect -o json: %v, %+v", err, rec.Expect)
	}
	if out := must("task", "get", "vm1", "--tenant", "t"); !strings.Contains(out, "(expected at b until") {
		t.Errorf("task get with an expectation:\n%s", out)
	}
	if out := must("expect", "vm1", "--tenant", "t", "--cancel"); strings.Contains(out, "expected at") {
		t.Errorf("expect --cancel:\n%s", out)
	}
	for _, args := range [][]string{
		{"expect", "vm1", "--tenant", "t"},                               // neither --nve nor --cancel
		{"expect", "vm1", "--tenant", "t", "--nve", "b", "--cancel"},     // both
		{"expect", "vm1", "--tenant", "t", "--nve", "b", "--ttl", "-1s"}, // negative
		{"expect", "vm1", "--tenant", "t", "--nve", "b", "--ttl", "1h"},  // over mapsrv's maximum
		{"expect", "vm1", "--tenant", "t", "--nve", "a"},                 // already there
		{"expect", "vm1", "--tenant", "t", "--nve", "nope"},              // no such nve
	} {
		if out, err := cmd(args...); err == nil {
			t.Errorf("ilactl %s: no error\n%s", strings.Join(args, " "), out)
		}
	}
	out = must("task", "move", "vm1", "--tenant", "t", "--to", "b")
	if !strings.Contains(out, "fd00:0:0:2") || !strings.Contains(out, "a@fd00:0:0:1 until") {
		t.Errorf("task move output:\n%s", out)
	}
	out = must("task", "list")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 3 || !strings.HasPrefix(rows[0], "TENANT") {
		t.Errorf("task list:\n%s", out)
	}
	out = must("task", "move", "vm1", "--tenant", "t", "--to", "a", "--mode", "cold")
	if !strings.Contains(out, "suspended -> a") {
		t.Errorf("cold move output:\n%s", out)
	}

	// Refusals exit non-zero with mapsrv's reason.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "register", "x", "--nve", "a", "--sir", "2001:db8::1:0"}, "0x0000"},
		{[]string{"task", "register", "x", "--nve", "a", "--sir", "nonsense"}, "not an IPv6 address"},
		{[]string{"task", "register", "x", "--nve", "a"}, "--sir"},
		{[]string{"task", "register", "x", "--nve", "zz", "--sir", "2001:db8::9"}, "nve zz: not found"},
		{[]string{"task", "move", "vm1", "--tenant", "t", "--to", "nowhere"}, "not found"},
		{[]string{"task", "move", "vm1", "--tenant", "t", "--to", "b", "--mode", "tepid"}, "want hot, warm or cold"},
		{[]string{"task", "get", "ghost", "--tenant", "t"}, "not found"},
		{[]string{"nve", "add", "c", "--locator", "fd00:0:0:1", "--underlay", "fd99::3"}, "belongs to nve a"},
		{[]string{"domain", "add", "other", "--sir-prefix", "2001:db8::/64"}, "already belongs to domain prod"},
		{[]string{"task", "list", "-o", "yaml"}, "output format"},
	} {
		if _, err := cmd(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ilactl %s: error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}

	out = must("task", "deregister", "vm1", "--tenant", "t")
	if out != "deregistered t/vm1\n" {
		t.Errorf("deregister output %q", out)
	}
	if _, err := cmd("task", "get", "vm1", "--tenant", "t"); err == nil {
		t.Error("task get after deregister: no error")
	}

	// The watch saw everything, in order.
	deadline := time.Now().Add(10 * time.Second)
	var types []string
	for time.Now().Before(deadline) {
		mu.Lock()
		types = types[:0]
		for _, l := range lines {
			var ev struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("watch line %q: %v", l, err)
			}
			types = append(types, ev.Type)
		}
		mu.Unlock()
		if len(types) > 0 && types[len(types)-1] == "task-delete" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wcancel()
	if err := <-wdone; err != nil {
		t.Errorf("watch: %v", err)
	}
	want := []string{
		"synced", "domain-upsert", "nve-upsert", "nve-upsert",
		"nve-upsert", "task-upsert", // vm1 (pins a's locator)
		"task-upsert", // v4
		"task-upsert", // expect vm1 at b (the record holds it)
		"task-upsert", // expect --cancel
		"task-upsert", // hot move to b
		"task-upsert", // cold move back to a
		"task-delete",
	}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("watch events (-want +got):\n%s", diff)
	}
}

// TestMapsrvToken: against an API that wants a token, ilactl sends the
// first token of --token-file (or $ILACTL_TOKEN) and reports a refusal.
func TestMapsrvToken(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli)})
	if err != nil {
		t.Fatal(err)
	}
	const tok = "ops-token-0123456789"
	w := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{})
	srv := httptest.NewServer(mapsrv.NewAPI(svc, mapsrv.APIOptions{Watch: w.Watch, Tokens: []string{tok}}))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("# ops\n"+tok+"\nsecond-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ILACTL_TOKEN_FILE", "")
	t.Setenv("ILACTL_TOKEN", "")
	if _, err := ilactl(t, "--api", srv.URL, "domain", "list"); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("without a token: %v, want HTTP 401", err)
	}
	if _, err := ilactl(t, "--api", srv.URL, "watch"); err == nil || !strings.Contains(err.Error(), "bearer token is required") {
		t.Errorf("watch without a token: %v, want the API's refusal", err)
	}
	if out, err := ilactl(t, "--api", srv.URL, "--token-file", file, "domain", "list", "-o", "json"); err != nil || !strings.Contains(out, "[") {
		t.Errorf("with --token-file: %q, %v", out, err)
	}
	t.Setenv("ILACTL_TOKEN", tok)
	if _, err := ilactl(t, "--api", srv.URL, "domain", "list"); err != nil {
		t.Errorf("with $ILACTL_TOKEN: %v", err)
	}
	if _, err := ilactl(t, "--api", srv.URL, "--token-file", filepath.Join(t.TempDir(), "none"), "domain", "list"); err == nil || !strings.Contains(err.Error(), "api token file") {
		t.Errorf("missing token file: %v", err)
	}
}
