//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/ila/datapath"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/where"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// whereDP fits *datapath.Datapath to locator.Datapath for agents with no
// ports (nothing is attached here).
type whereDP struct{ *datapath.Datapath }

func (d whereDP) UpsertLocal(l locator.Local) error {
	return d.Datapath.UpsertLocal(datapath.Local{SIR: l.SIR, Identifier: l.Identifier, Ifindex: l.Ifindex, MAC: l.MAC, Suspended: l.Suspended, Tenant: l.Tenant, IPv4: l.IPv4})
}
func (d whereDP) AttachPort(string, int) error { return nil }
func (d whereDP) DetachPort(string, int) error { return nil }

// TestWhereAgainstAgents runs ilactl where against a real mapsrv (API over
// an embedded etcd) and two real agents whose datapaths are real eBPF
// tables, each serving ilad's local API on a unix socket: consistent
// after a move, then a datapath entry rewritten behind its agent's back is
// reported wrong and the exit status is an error.
func TestWhereAgainstAgents(t *testing.T) {
	testutil.Privileged(t)
	cli, _ := etcdtest.Start(t)
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli), InFlight: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{})
	srv := httptest.NewServer(mapsrv.NewAPI(svc, mapsrv.APIOptions{Watch: w.Watch}))
	t.Cleanup(srv.Close)
	ctx := t.Context()
	sir, err := ila.ParseSIRPrefix("3333:0:0:1::/64")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sir, Csum: ila.CsumNeutralMap}); err != nil {
		t.Fatal(err)
	}
	bpffs := testutil.BPFFS(t)
	dir := t.TempDir()
	locs := map[string]ila.Locator{"nve1": 0x2001_0db8_0000_0001, "nve2": 0x2001_0db8_0000_0002}
	dps := map[string]*datapath.Datapath{}
	handlers := map[string]http.Handler{}
	var wg sync.WaitGroup
	actx, stop := context.WithCancel(context.Background())
	t.Cleanup(func() { stop(); wg.Wait() })
	for _, name := range []string{"nve1", "nve2"} {
		if err := svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: name, Locators: []ila.Locator{locs[name]}, Underlay: netip.MustParseAddr("fd00::" + name[3:])}}); err != nil {
			t.Fatal(err)
		}
		dp, err := datapath.Open(datapath.Config{PinPath: filepath.Join(bpffs, name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dp.Close() })
		dps[name] = dp
		a, err := locator.New(locator.Config{Node: name, Locators: []locator.LocatorSpec{{Locator: locs[name]}}, Datapath: whereDP{dp},
			Source: etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{})})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("unix", filepath.Join(dir, name+".sock"))
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: a.Handler()}
		handlers[name] = a.Handler()
		wg.Add(2)
		go func() { defer wg.Done(); a.Run(actx) }()
		go func() { defer wg.Done(); hs.Serve(ln) }()
		t.Cleanup(func() { hs.Close() })
	}
	web := sir.Addr(0x1001)
	if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "nve1", Tenant: "t1", Name: "web", SIR: web}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "nve2", Tenant: "t1", Name: "db", SIR: sir.Addr(0x1002)}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t1", Name: "web", To: "nve2"}); err != nil {
		t.Fatal(err)
	}
	base := []string{"--api", srv.URL, "where", "--ilad-socket", filepath.Join(dir, "{nve}.sock")}

	// Converged: both datapaths map web to nve2's locator.
	out, err := ilactl(t, append(base, "t1/web", "--wait", "10s", "-o", "json")...)
	if err != nil {
		t.Fatalf("where t1/web: %v\n%s", err, out)
	}
	var rep where.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(rep.Tasks) != 1 || len(rep.Tasks[0].Nodes) != 2 || !rep.Consistent {
		t.Fatalf("report: %s", out)
	}
	tr := rep.Tasks[0]
	for _, h := range tr.Nodes {
		if h.Locator != locs["nve2"] || h.Status != where.StatusOK || h.Applied < tr.Revision {
			t.Errorf("%s holds %v (applied %d, task revision %d): %s", h.Node, h.Locator, h.Applied, tr.Revision, h.Status)
		}
	}

	// Rewrite nve1's entry for web behind its agent: wrong, exit error.
	if err := dps["nve1"].UpsertMapping(ila.Mapping{SIR: sir, Identifier: 0x1001, Locator: locs["nve1"], Csum: ila.CsumNeutralMap, Tenant: ila.TenantOf("t1")}); err != nil {
		t.Fatal(err)
	}
	out, err = ilactl(t, append(base, "--all")...)
	if err == nil || !strings.Contains(err.Error(), "inconsistent") || !strings.Contains(err.Error(), "t1/web") {
		t.Fatalf("where --all after the rewrite: %v\n%s", err, out)
	}
	var wrong int
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " wrong ") {
			wrong++
			if !strings.HasPrefix(line, "t1/web") || !strings.Contains(line, "nve1") {
				t.Errorf("wrong line: %q", line)
			}
		}
	}
	if wrong != 1 || !strings.Contains(out, "INCONSISTENT") {
		t.Errorf("want one wrong row and the verdict:\n%s", out)
	}
	// By SIR address, and an address nobody holds.
	if out, err := ilactl(t, append(base, web.String())...); err == nil {
		t.Errorf("where %s: no error\n%s", web, out)
	}
	if _, err := ilactl(t, append(base, sir.Addr(0x9999).String())...); err == nil || !strings.Contains(err.Error(), "not in the store") {
		t.Errorf("unknown address: %v", err)
	}
	// nve2's API also on TCP behind a token, advertised in its heartbeat:
	// where finds it there (no socket pattern given), with the token.
	const tok = "read-only-token-0123456789"
	tcp := httptest.NewServer(locator.RequireToken(handlers["nve2"], nil, []string{tok}))
	t.Cleanup(tcp.Close)
	rep0 := svc.Handle(ctx, netip.MustParseAddrPort("[::1]:9"), &regproto.Message{Type: regproto.TypeRequest, NVE: "nve2", Heartbeat: true, Applied: 1, API: tcp.URL})
	if rep0.Status != regproto.StatusAccepted {
		t.Fatalf("heartbeat: %+v", rep0)
	}
	tokFile := filepath.Join(dir, "ilad.token")
	if err := os.WriteFile(tokFile, []byte("read-only "+tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ilactl(t, "--api", srv.URL, "nve", "status"); err != nil || !strings.Contains(out, "nve2") || !strings.Contains(out, tcp.URL) {
		t.Errorf("nve status: %v\n%s", err, out)
	}
	adv := []string{"--api", srv.URL, "where", "t1/db", "--ilad-addr", "nve1=" + filepath.Join(dir, "nve1.sock")}
	if out, err := ilactl(t, append(adv, "--ilad-token-file", tokFile)...); err != nil || strings.Count(out, " ok ") != 2 {
		t.Errorf("where through the advertised address: %v\n%s", err, out)
	}
	if out, err := ilactl(t, adv...); err == nil || !strings.Contains(out, "unreachable") {
		t.Errorf("advertised address without the token: %v\n%s", err, out)
	}

	// An NVE whose ilad does not answer is reported, not skipped.
	out, err = ilactl(t, "--api", srv.URL, "where", "t1/db", "--ilad-socket", filepath.Join(dir, "{nve}.sock"), "--ilad-addr", "nve2="+filepath.Join(dir, "gone.sock"))
	if err == nil || !strings.Contains(out, "unreachable") {
		t.Errorf("unreachable nve2: %v\n%s", err, out)
	}
}
