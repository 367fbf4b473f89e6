package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

const domainTmpl = `<domain type='qemu'>
  <name>web</name>
  <memory unit='MiB'>128</memory>
  METADATA
  <devices>
    <interface type='ethernet'>
      <mac address='52:54:00:00:10:01'/>
      <target dev='tap-web'/>
      <model type='virtio'/>
    </interface>
    INTERFACES
  </devices>
</domain>`

func domainXML(metadata, interfaces string) string {
	return strings.NewReplacer("METADATA", metadata, "INTERFACES", interfaces).Replace(domainTmpl)
}

const webMeta = `<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web" sir="3333:0:0:1::1001"/></metadata>`

func TestTaskFromDomain(t *testing.T) {
	web := locator.TaskSpec{Name: "web", Tenant: "t1", Iface: "tap-web", SIR: netip.MustParseAddr("3333:0:0:1::1001"), MAC: ila.MAC{0x52, 0x54, 0, 0, 0x10, 0x01}}
	second := `<interface type='ethernet'><mac address='52:54:00:00:10:02'/><target dev='tap-mgmt'/></interface>`
	tests := []struct {
		name    string
		xml     string
		want    locator.TaskSpec
		ok      bool
		wantErr string
	}{
		{name: "metadata and the only interface", xml: domainXML(webMeta, ""), want: web, ok: true},
		{name: "interface chosen by MAC", xml: domainXML(`<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web" sir="3333:0:0:1::1001" mac="52:54:00:00:10:02"/></metadata>`, second),
			want: func() locator.TaskSpec {
				s := web
				s.Iface, s.MAC = "tap-mgmt", ila.MAC{0x52, 0x54, 0, 0, 0x10, 0x02}
				return s
			}(), ok: true},
		{name: "two interfaces, no MAC", xml: domainXML(webMeta, second), wantErr: "which tap"},
		{name: "iface in the metadata", xml: domainXML(`<metadata><x:task xmlns:x="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web" sir="3333:0:0:1::1001" iface="vm-web"/></metadata>`, ""),
			want: func() locator.TaskSpec { s := web; s.Iface = "vm-web"; return s }(), ok: true},
		{name: "IPv4 tenant", xml: domainXML(`<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web" sir="3333:0:0:1::1001" ipv4="10.0.0.5" vni="7"/></metadata>`, ""),
			want: func() locator.TaskSpec { s := web; s.IPv4, s.VNI = netip.MustParseAddr("10.0.0.5"), 7; return s }(), ok: true},
		{name: "no metadata", xml: domainXML("", "")},
		{name: "metadata of someone else", xml: domainXML(`<metadata><app:info xmlns:app="https://example.com/app"/></metadata>`, "")},
		{name: "no sir", xml: domainXML(`<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web"/></metadata>`, ""), wantErr: "task sir"},
		{name: "no tenant", xml: domainXML(`<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" name="web" sir="3333:0:0:1::1001"/></metadata>`, ""), wantErr: "tenant and name"},
		{name: "bad vni", xml: domainXML(`<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web" sir="3333:0:0:1::1001" ipv4="10.0.0.5" vni="x"/></metadata>`, ""), wantErr: "vni"},
		{name: "IPv4 without VNI", xml: domainXML(`<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web" sir="3333:0:0:1::1001" ipv4="10.0.0.5"/></metadata>`, ""), wantErr: "go together"},
		{name: "not XML", xml: "<domain", wantErr: "domain XML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := taskFromDomain(tc.xml)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one about %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || ok != tc.ok {
				t.Fatalf("ok, err = %v, %v; want %v, nil", ok, err, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); ok && diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExampleDomain(t *testing.T) {
	b, err := os.ReadFile("../../deploy/libvirt/web.xml")
	if err != nil {
		t.Fatal(err)
	}
	spec, ok, err := taskFromDomain(string(b))
	if err != nil || !ok || spec.Name != "web" || spec.Iface != "tap-web" {
		t.Errorf("deploy/libvirt/web.xml: %+v, %v, %v", spec, ok, err)
	}
}

// tapPorts is a Ports where only the listed taps exist.
type tapPorts map[string]bool

func (p tapPorts) Prepare(ifname string) (locator.Port, error) {
	if !p[ifname] {
		return locator.Port{}, locator.ErrNoPort
	}
	return locator.Port{Name: ifname, Ifindex: 5}, nil
}
func (p tapPorts) Release(string) error { return nil }

// hookIlad runs an agent (the destination NVE, where web is mapped at
// another NVE) behind ilad's local API on a unix socket.
func hookIlad(t *testing.T, taps tapPorts) (string, *locatortest.Datapath, *locatortest.Registrar) {
	t.Helper()
	sirP, err := ila.ParseSIRPrefix("3333:0:0:1::/64")
	if err != nil {
		t.Fatal(err)
	}
	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	src.SetDomain(ila.Domain{Name: "prod", SIR: sirP, Csum: ila.CsumNeutralMap})
	src.SetTask(ila.Task{Domain: "prod", Name: "web", Identifier: 0x1001, SIR: sirP.Addr(0x1001), Locator: 0x2001_0000_0000_000b, NVE: "nve1", State: ila.StateActive, Version: 1})
	reg := &locatortest.Registrar{Grant: time.Minute}
	a, err := locator.New(locator.Config{Node: "nve2", Locators: []locator.LocatorSpec{{Locator: 0x2001_0000_0000_000c}}, Datapath: dp, Source: src, Registrar: reg, Ports: taps})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	sock := filepath.Join(t.TempDir(), "ilad.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock, dp, reg
}

// hook runs "ilactl hook libvirt" as libvirt does: arguments and the
// domain XML on stdin.
func hook(t *testing.T, sock, xml string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb)
	root.SetIn(strings.NewReader(xml))
	root.SetArgs(append([]string{"hook", "libvirt", "--ilad", sock}, args...))
	err := root.ExecuteContext(t.Context())
	return errb.String(), err
}

func TestLibvirtHookMigration(t *testing.T) {
	sock, dp, reg := hookIlad(t, tapPorts{"tap-web": true})
	c, err := locator.NewClient(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	xml := domainXML(webMeta, "")
	state := func() locator.TaskState {
		t.Helper()
		st, err := c.Task(ctx, "web")
		if err != nil {
			return ""
		}
		return st.State
	}
	// Incoming migration: migrate, prepare, start, started.
	for _, ev := range [][]string{{"migrate", "begin"}, {"prepare", "begin"}, {"start", "begin"}, {"started", "begin"}} {
		if log, err := hook(t, sock, xml, append([]string{"web"}, append(ev, "-")...)...); err != nil {
			t.Fatalf("%v: %v (%s)", ev, err, log)
		}
	}
	if got := state(); got != locator.StatePrepared {
		t.Fatalf("after started: %q, want prepared", got)
	}
	if n := len(reg.Registrations()); n != 0 {
		t.Errorf("the hook registered the task before its commit (%d registrations)", n)
	}
	// The migration fails: libvirt releases the domain on the destination.
	if log, err := hook(t, sock, xml, "web", "release", "end", "-"); err != nil || !strings.Contains(log, "aborted") {
		t.Fatalf("release after a failed migration: %v (%s)", err, log)
	}
	if got := state(); got != "" {
		t.Errorf("after abort: task still %q", got)
	}
	if n := len(dp.LocalEntries()); n != 0 || len(reg.Registrations()) != 0 {
		t.Errorf("abort left %d local entries, %d registrations", n, len(reg.Registrations()))
	}
	// A second try succeeds; the commit (here by API) makes it active and a
	// later release detaches it (the VM shut down here).
	if log, err := hook(t, sock, xml, "web", "started", "begin", "-"); err != nil {
		t.Fatalf("started: %v (%s)", err, log)
	}
	if _, err := c.Commit(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if log, err := hook(t, sock, xml, "web", "release", "end", "-"); err != nil || !strings.Contains(log, "detached") {
		t.Fatalf("release of an active task: %v (%s)", err, log)
	}
	if got := state(); got != "" {
		t.Errorf("after release: task still %q", got)
	}
	// Releasing again, or a domain that is not a task: nothing, success.
	for _, x := range []string{xml, domainXML("", "")} {
		if log, err := hook(t, sock, x, "web", "release", "end", "-"); err != nil {
			t.Errorf("release: %v (%s)", err, log)
		}
	}
	if log, err := hook(t, sock, domainXML("", ""), "web", "started", "begin", "-"); err != nil || !strings.Contains(log, "not an ilamesh task") {
		t.Errorf("started of a domain without metadata: %v (%s)", err, log)
	}
}

func TestLibvirtHookErrors(t *testing.T) {
	sock, _, reg := hookIlad(t, tapPorts{})
	xml := domainXML(webMeta, "")
	// No tap yet: prepare/start go on (libvirt may create it later),
	// started fails (and so aborts the start or the migration).
	if log, err := hook(t, sock, xml, "web", "prepare", "begin", "-"); err != nil || !strings.Contains(log, "not there yet") {
		t.Errorf("prepare without tap: %v (%s)", err, log)
	}
	if _, err := hook(t, sock, xml, "web", "started", "begin", "-"); err == nil {
		t.Error("started without tap succeeded")
	}
	bad := domainXML(`<metadata><ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="t1" name="web"/></metadata>`, "")
	if _, err := hook(t, sock, bad, "web", "migrate", "begin", "-"); err == nil {
		t.Error("migrate with broken metadata succeeded (the destination could not prepare it)")
	}
	if log, err := hook(t, sock, bad, "web", "release", "end", "-"); err != nil || !strings.Contains(log, "task sir") {
		t.Errorf("release with broken metadata: %v (%s), want success with a log line", err, log)
	}
	if _, err := hook(t, filepath.Join(t.TempDir(), "gone.sock"), xml, "web", "started", "begin", "-"); err == nil {
		t.Error("started with ilad unreachable succeeded")
	}
	if n := len(reg.Registrations()); n != 0 {
		t.Errorf("%d registrations", n)
	}
	for _, tc := range []struct {
		op, sub string
		want    hookAction
	}{
		{"prepare", "begin", hookPrepareSoft}, {"start", "begin", hookPrepareSoft}, {"started", "begin", hookPrepare},
		{"release", "end", hookRelease}, {"migrate", "begin", hookCheck}, {"stopped", "end", hookNothing},
		{"reconnect", "begin", hookNothing}, {"restore", "begin", hookNothing},
	} {
		if got := libvirtAction(tc.op, tc.sub); got != tc.want {
			t.Errorf("libvirtAction(%s, %s) = %v, want %v", tc.op, tc.sub, got, tc.want)
		}
	}
}

// TestHandoverCmd: at the source (here web is active), "ilactl handover
// --now" redirects web's packets to the destination's locator at once;
// bad input is refused and changes nothing.
func TestHandoverCmd(t *testing.T) {
	sock, dp, _ := hookIlad(t, tapPorts{"tap-web": true})
	c, err := locator.NewClient(sock)
	if err != nil {
		t.Fatal(err)
	}
	if log, err := hook(t, sock, domainXML(webMeta, ""), "web", "started", "begin", "-"); err != nil {
		t.Fatalf("started: %v (%s)", err, log)
	}
	if _, err := c.Commit(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		root := newRootCmd(&out, &errb)
		root.SetArgs(append([]string{"handover", "--ilad", sock, "-o", "json"}, args...))
		err := root.ExecuteContext(t.Context())
		return out.String() + errb.String(), err
	}
	for _, args := range [][]string{
		{"web"},                                 // no --to
		{"web", "--to", "nowhere", "--now"},     // not a locator
		{"web", "--to", "2001:0:0:b"},           // nothing tells when the guest stops
		{"nope", "--to", "2001:0:0:b", "--now"}, // no such task
	} {
		if out, err := run(args...); err == nil {
			t.Errorf("handover %v: no error (%s)", args, out)
		}
	}
	if n := len(dp.InFlightEntries()); n != 0 || len(dp.LocalEntries()) != 1 {
		t.Fatalf("refused handovers changed the datapath: %d in-flight, %d local", n, len(dp.LocalEntries()))
	}
	out, err := run("web", "--to", "2001:0:0:b", "--now")
	if err != nil {
		t.Fatalf("handover: %v (%s)", err, out)
	}
	if !strings.Contains(out, `"redirected_at"`) || len(dp.LocalEntries()) != 0 {
		t.Errorf("handover --now: %s; %d local entries left, want the redirect", out, len(dp.LocalEntries()))
	}
	for _, f := range dp.InFlightEntries() {
		if f.Mapping.Locator != 0x2001_0000_0000_000b {
			t.Errorf("in-flight to %v, want 2001:0:0:b", f.Mapping.Locator)
		}
	}
}
