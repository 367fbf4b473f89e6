//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/ilamesh/ilamesh/deploy/lab"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// cniLab is a lab of two NVEs (one task each) with ila-cni and cnitool
// built beside its components.
type cniLab struct {
	l    *lab.Lab
	topo *lab.Topology
	bin  string
}

func upCNILab(t *testing.T) *cniLab {
	t.Helper()
	testutil.Privileged(t)
	if testing.Short() {
		t.Skip("builds a lab of network namespaces")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/mapsrv", "./cmd/ilad", "./cmd/dnsbridge", "./cmd/ilactl", "./cmd/ila-cni", "github.com/containernetworking/cni/cnitool")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := lab.Config{Name: netns.Unique("cni"), StateDir: filepath.Join(t.TempDir(), "s"), NVEs: 2, TasksPerNVE: 1, IPv4Tenant: true, BinDir: bin,
		Progress: func(s string) { t.Log(s) }}
	l, err := lab.Up(t.Context(), cfg)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(cfg.StateDir, "logs", "ilad-*.log"))
			for _, p := range logs {
				b, _ := os.ReadFile(p)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("--- %s\n%s", filepath.Base(p), strings.Join(lines[max(0, len(lines)-10):], "\n"))
			}
		}
		var err error
		if l != nil {
			err = l.Down()
		} else {
			err = lab.Down(cfg.StateDir, cfg.Name, nil)
		}
		if err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return &cniLab{l: l, topo: l.Topology(), bin: bin}
}

// pluginConf is the plugin entry of NVE i's config list, as a single
// plugin config, with fields changed by mod.
func (c *cniLab) pluginConf(t *testing.T, i int, mod func(map[string]any)) []byte {
	t.Helper()
	return c.pluginConfOf(t, i, lab.CNIConfFile, mod)
}

// pluginConfOf is pluginConf of the config list in file.
func (c *cniLab) pluginConfOf(t *testing.T, i int, file string, mod func(map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.topo.NVEs[i].CNINetconfDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil || len(list.Plugins) != 1 {
		t.Fatalf("lab cni config: %v (%d plugins)", err, len(list.Plugins))
	}
	p := list.Plugins[0]
	p["cniVersion"], p["name"] = list.CNIVersion, list.Name
	if mod != nil {
		mod(p)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *cniLab) api(t *testing.T) *apiclient.Client {
	t.Helper()
	ctl, err := ns.GetNS("/var/run/netns/" + c.topo.Mapsrv.Netns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	toks, err := mapsrv.ReadTokenFile(c.topo.Mapsrv.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := ctl.Do(func(ns.NetNS) error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}}
	if c.topo.Mapsrv.CAFile != "" {
		if tr.TLSClientConfig, err = apiclient.TLSConfig(c.topo.Mapsrv.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	ac, err := apiclient.New(apiclient.Config{URL: c.topo.Mapsrv.API, Token: toks[0], HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

// container makes a network namespace under /var/run/netns, removed at
// the end of the test.
func container(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/var/run/netns/" + name
}

// pingFrom pings dst from the namespace at path until a reply comes (the
// first packets may race the mapping's installation on the far NVE).
func pingFrom(t *testing.T, path string, dst netip.Addr) {
	t.Helper()
	var out []byte
	var err error
	for range 10 {
		out, err = exec.Command("ip", "netns", "exec", filepath.Base(path), "ping", "-c", "1", "-W", "1", dst.String()).CombinedOutput()
		if err == nil {
			return
		}
	}
	t.Fatalf("ping %s from %s: %v\n%s", dst, path, err, out)
}

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// iladHas reports whether NVE i's ilad has the task on iface.
func (c *cniLab) iladHas(t *testing.T, i int, task, iface string) bool {
	t.Helper()
	cl, err := locator.NewClient(filepath.Join(c.topo.StateDir, "ilad-"+c.topo.NVEs[i].Name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := cl.Tasks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ts {
		if s.Name == task && (iface == "" || s.Iface == iface) {
			return true
		}
	}
	return false
}

// linkIn reports whether the namespace at path has a link named name.
func linkIn(t *testing.T, path, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", filepath.Base(path), "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link in %s: %v: %s", path, err, out)
	}
	return strings.Contains(string(out), " "+name+"@") || strings.Contains(string(out), " "+name+":")
}

// addOK runs ADD through the reference plugins' testutils and returns
// its result.
func addOK(t *testing.T, args *skel.CmdArgs) (*current.Result, types.Result) {
	t.Helper()
	r, _, err := testutils.CmdAddWithArgs(args, func() error { return cmdAdd(args) })
	if err != nil {
		t.Fatalf("ADD %s: %v", args.ContainerID, err)
	}
	res, err := current.GetResult(r)
	if err != nil {
		t.Fatalf("ADD %s: result %v: %v", args.ContainerID, r, err)
	}
	return res, r
}

func TestLab(t *testing.T) {
	c := upCNILab(t)
	t.Run("testutils", func(t *testing.T) { testUtils(t, c) })
	t.Run("errors", func(t *testing.T) { testErrors(t, c) })
	t.Run("cnitool", func(t *testing.T) { testCNITool(t, c) })
	t.Run("host-local", func(t *testing.T) { testHostLocal(t, c) })
	t.Run("ipv4", func(t *testing.T) { testIPv4(t, c) })
	t.Run("prepare", func(t *testing.T) { testPrepare(t, c) })
}

// testUtils drives the plugin in process with the reference plugins'
// testutils: ADD, CHECK, STATUS, DEL (twice), GC, and a chained ADD that
// takes its address from prevResult.
func testUtils(t *testing.T, c *cniLab) {
	ctx := t.Context()
	conf := c.pluginConf(t, 0, nil)
	path := container(t, netns.Unique("cnic"))
	args := &skel.CmdArgs{ContainerID: "c1", Netns: path, IfName: "eth0", StdinData: conf, Args: "K8S_POD_NAMESPACE=apps;K8S_POD_NAME=db-0"}
	res, _ := addOK(t, args)
	if len(res.IPs) != 1 || len(res.Interfaces) != 2 || res.IPs[0].Gateway.String() != "fe80::1" {
		t.Fatalf("result %+v: want one IP via fe80::1 on two interfaces", res)
	}
	sir, _ := netip.AddrFromSlice(res.IPs[0].Address.IP)
	if ones, _ := res.IPs[0].Address.Mask.Size(); ones != 128 || !lab.SIRPrefix.Contains(sir) {
		t.Fatalf("address %v: want a /128 in %v", res.IPs[0].Address, lab.SIRPrefix)
	}
	ac := c.api(t)
	rec, err := ac.Task(ctx, "default", "apps_db-0")
	if err != nil || rec.NVE != c.topo.NVEs[0].Name || rec.SIR != sir {
		t.Fatalf("mapping of apps_db-0: %+v, %v; want %v on %s", rec, err, sir, c.topo.NVEs[0].Name)
	}
	pingFrom(t, path, c.topo.Tasks[1].SIR) // the lab task on nve2
	if err := testutils.CmdCheckWithArgs(args, func() error { return cmdCheck(args) }); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := testutils.CmdStatus(func() error { return cmdStatus(&skel.CmdArgs{StdinData: conf}) }); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	hostIf := hostIfname("ila", "c1", "eth0")
	for i := range 2 {
		if err := testutils.CmdDelWithArgs(args, func() error { return cmdDel(args) }); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	nvePath := "/var/run/netns/" + c.topo.NVEs[0].Netns
	if linkIn(t, nvePath, hostIf) || linkIn(t, path, "eth0") || c.iladHas(t, 0, "apps_db-0", "") {
		t.Errorf("after DEL: veth %s or the ilad task left", hostIf)
	}
	if err := testutils.CmdCheckWithArgs(args, func() error { return cmdCheck(args) }); err == nil {
		t.Errorf("CHECK after DEL succeeded")
	}
	// The allocation stays: the pod created again gets its address back.
	if a, err := ac.Allocation(ctx, "default", "apps_db-0"); err != nil || a.SIR != sir {
		t.Errorf("allocation after DEL: %+v, %v; want %v kept", a, err, sir)
	}

	// GC: an attachment the runtime no longer lists goes, a listed one stays.
	keep := &skel.CmdArgs{ContainerID: "c2", Netns: container(t, netns.Unique("cnic")), IfName: "eth0", StdinData: conf}
	drop := &skel.CmdArgs{ContainerID: "c3", Netns: container(t, netns.Unique("cnic")), IfName: "eth0", StdinData: conf}
	for _, a := range []*skel.CmdArgs{keep, drop} {
		if _, _, err := testutils.CmdAddWithArgs(a, func() error { return cmdAdd(a) }); err != nil {
			t.Fatalf("ADD %s: %v", a.ContainerID, err)
		}
	}
	gcConf := c.pluginConf(t, 0, func(p map[string]any) {
		p["cni.dev/valid-attachments"] = []map[string]string{{"containerID": "c2", "ifname": "eth0"}}
	})
	if err := cmdGC(&skel.CmdArgs{StdinData: gcConf}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if !c.iladHas(t, 0, "c2", hostIfname("ila", "c2", "eth0")) || c.iladHas(t, 0, "c3", "") || linkIn(t, nvePath, hostIfname("ila", "c3", "eth0")) {
		t.Errorf("after GC: want c2 attached and c3 gone")
	}
	if err := testutils.CmdDelWithArgs(keep, func() error { return cmdDel(keep) }); err != nil {
		t.Fatal(err)
	}

	// Chained: the address comes from prevResult, which the result keeps.
	addr := netip.MustParseAddr("fd00:5151::2000:0:0:7001")
	chained := c.pluginConf(t, 0, func(p map[string]any) {
		delete(p, "mapsrv")
		p["address"] = "prev"
		p["prevResult"] = map[string]any{"cniVersion": "1.1.0", "interfaces": []map[string]any{{"name": "lo0"}},
			"ips": []map[string]any{{"address": addr.String() + "/128"}}}
	})
	ch := &skel.CmdArgs{ContainerID: "c4", Netns: container(t, netns.Unique("cnic")), IfName: "eth0", StdinData: chained}
	res, r := addOK(t, ch)
	if len(res.Interfaces) != 3 || res.Interfaces[0].Name != "lo0" || res.IPs[0].Address.IP.String() != addr.String() || *res.IPs[0].Interface != 2 {
		t.Errorf("chained result %s: want prevResult's interface kept and the address on ours", r)
	}
	if rec, err := ac.Task(ctx, "default", "c4"); err != nil || rec.SIR != addr {
		t.Errorf("chained mapping: %+v, %v", rec, err)
	}
	if err := testutils.CmdDelWithArgs(ch, func() error { return cmdDel(ch) }); err != nil {
		t.Fatal(err)
	}
}

// testErrors: bad input gets a CNI error with its code, and leaves no veth,
// no task and no allocation behind.
func testErrors(t *testing.T, c *cniLab) {
	ctx := t.Context()
	ac := c.api(t)
	path := container(t, netns.Unique("cnie"))
	nvePath := "/var/run/netns/" + c.topo.NVEs[0].Netns
	for _, tc := range []struct {
		name  string
		conf  []byte
		netns string
		code  uint
	}{
		{"malformed config", []byte(`{"name":"ila","type":"ila-cni","mtu":"x"}`), path, types.ErrDecodingFailure},
		{"invalid config", c.pluginConf(t, 0, func(p map[string]any) { p["address"] = "dhcp" }), path, types.ErrInvalidNetworkConfig},
		{"unknown domain", c.pluginConf(t, 0, func(p map[string]any) { p["domain"] = "nope" }), path, types.ErrInvalidNetworkConfig},
		{"ilad down", c.pluginConf(t, 0, func(p map[string]any) { p["ilad_socket"] = filepath.Join(t.TempDir(), "none.sock") }), path, types.ErrTryAgainLater},
		{"mapsrv down", c.pluginConf(t, 0, func(p map[string]any) { p["mapsrv"] = map[string]string{"url": "http://[fd00:ff:c0::2]:1"} }), path, types.ErrTryAgainLater},
		{"netns gone", c.pluginConf(t, 0, nil), "/var/run/netns/" + netns.Unique("gone"), types.ErrUnknownContainer},
		{"address outside the domain", c.pluginConf(t, 0, func(p map[string]any) {
			delete(p, "mapsrv")
			p["address"] = "prev"
			p["prevResult"] = map[string]any{"cniVersion": "1.1.0", "ips": []map[string]any{{"address": "2001:db8::1/128"}}}
		}), path, errRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := netns.Unique("pod")
			args := &skel.CmdArgs{ContainerID: name, Netns: tc.netns, IfName: "eth0", StdinData: tc.conf, Args: "K8S_POD_NAMESPACE=e;K8S_POD_NAME=" + name}
			_, _, err := testutils.CmdAddWithArgs(args, func() error { return cmdAdd(args) })
			if cniCode(err) != tc.code {
				t.Fatalf("ADD: %v, want code %d", err, tc.code)
			}
			if linkIn(t, path, "eth0") || linkIn(t, nvePath, hostIfname("ila", name, "eth0")) {
				t.Errorf("veth left behind")
			}
			if c.iladHas(t, 0, "e_"+name, "") {
				t.Errorf("task left attached")
			}
			if _, err := ac.Allocation(ctx, "default", "e_"+name); !errors.Is(err, mapsrv.ErrNotFound) {
				t.Errorf("allocation left behind: %v", err)
			}
		})
	}
	// The container already has the interface: the veth cannot be made
	// after the address was allocated; the allocation is released.
	busy := container(t, netns.Unique("cnie"))
	if out, err := exec.Command("ip", "-n", filepath.Base(busy), "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p").CombinedOutput(); err != nil {
		t.Fatalf("eth0 in the way: %v: %s", err, out)
	}
	args := &skel.CmdArgs{ContainerID: "busy", Netns: busy, IfName: "eth0", StdinData: c.pluginConf(t, 0, nil), Args: "K8S_POD_NAMESPACE=e;K8S_POD_NAME=busy"}
	if _, _, err := testutils.CmdAddWithArgs(args, func() error { return cmdAdd(args) }); err == nil {
		t.Errorf("ADD into a namespace that has eth0 already: no error")
	}
	if _, err := ac.Allocation(ctx, "default", "e_busy"); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("allocation left behind by a failed ADD: %v", err)
	}
	if c.iladHas(t, 0, "e_busy", "") || linkIn(t, nvePath, hostIfname("ila", "busy", "eth0")) {
		t.Errorf("task or veth left behind by a failed ADD")
	}

	// Flap damping: the pod re-added on alternate NVEs until mapsrv marks
	// it duplicate and refuses the move (code 100), leaving nothing.
	sandboxes := []string{container(t, netns.Unique("cnif")), container(t, netns.Unique("cnif"))}
	var prev [2]*skel.CmdArgs
	refused := false
	for i := range 10 {
		n := i % 2
		if prev[n] != nil {
			p := prev[n]
			if err := testutils.CmdDelWithArgs(p, func() error { return cmdDel(p) }); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		}
		a := &skel.CmdArgs{ContainerID: fmt.Sprintf("flap%d", i), Netns: sandboxes[n], IfName: "eth0", StdinData: c.pluginConf(t, n, nil), Args: "K8S_POD_NAMESPACE=e;K8S_POD_NAME=flappy"}
		if i > 0 {
			// The orchestrator expects each re-add (a claim from the
			// other NVE): what is refused is the move flap damping stops.
			if _, err := ac.Expect(ctx, "default", "e_flappy", mapsrv.ExpectBody{NVE: c.topo.NVEs[n].Name}); err != nil {
				t.Fatalf("expect e_flappy on %s: %v", c.topo.NVEs[n].Name, err)
			}
		}
		_, _, err := testutils.CmdAddWithArgs(a, func() error { return cmdAdd(a) })
		if err == nil {
			prev[n] = a
			continue
		}
		if cniCode(err) != errRefused || !strings.Contains(err.Error(), "flap damped") {
			t.Fatalf("ADD #%d: %v, want code %d once flap damping refuses", i+1, err, errRefused)
		}
		t.Logf("ADD #%d refused: %v", i+1, err)
		if linkIn(t, sandboxes[n], "eth0") || c.iladHas(t, n, "e_flappy", hostIfname("ila", a.ContainerID, "eth0")) {
			t.Errorf("refused ADD left its veth or task")
		}
		refused = true
		break
	}
	if !refused {
		t.Errorf("10 alternate ADDs of one pod: never refused by flap damping")
	}
	for _, p := range prev {
		if p != nil {
			_ = testutils.CmdDelWithArgs(p, func() error { return cmdDel(p) })
		}
	}

	// STATUS with ilad down: not available.
	down := c.pluginConf(t, 0, func(p map[string]any) { p["ilad_socket"] = filepath.Join(t.TempDir(), "none.sock") })
	if err := cmdStatus(&skel.CmdArgs{StdinData: down}); cniCode(err) != types.ErrPluginNotAvailable {
		t.Errorf("STATUS with ilad down: %v, want code 50", err)
	}
}

// cnitool runs cnitool with the lab's config directory of NVE i.
func (c *cniLab) cnitool(t *testing.T, i int, cniArgs string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "cnitool"), args...)
	cmd.Env = append(os.Environ(), "NETCONFPATH="+c.topo.NVEs[i].CNINetconfDir, "CNI_PATH="+c.topo.CNIBinDir, "CNI_ARGS="+cniArgs)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("cnitool %s: %w: %s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes(), nil
}

// delOnCleanup deletes a cnitool attachment when the test ends (cnitool
// keeps a result cache in /var/lib/cni until DEL; DEL again is harmless).
func (c *cniLab) delOnCleanup(t *testing.T, i int, cniArgs, network, path, netconfDir, cniPath string) {
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(c.bin, "cnitool"), "del", network, path)
		cmd.Env = append(os.Environ(), "NETCONFPATH="+netconfDir, "CNI_PATH="+cniPath, "CNI_ARGS="+cniArgs)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("cleanup: cnitool del %s %s: %v: %s", network, path, err, out)
		}
	})
}

func (c *cniLab) etcdctl(t *testing.T, prefix string) string {
	t.Helper()
	args := []string{"--endpoints", c.topo.Etcd.Endpoints[0]}
	if e := c.topo.Etcd; e.ReadOnlyUser != "" {
		// The lab's etcd has authentication on: the read-only user of
		// topology.json, as an operator would use it.
		pw, err := os.ReadFile(e.ReadOnlyPasswordFile)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--user", e.ReadOnlyUser+":"+strings.TrimSpace(string(pw)))
	}
	out, err := exec.Command("etcdctl", append(args, "get", "--prefix", prefix)...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl get %s: %v: %s", prefix, err, out)
	}
	return string(out)
}

// testCNITool is the user's path: cnitool with the lab's config
// directories; the mapping in etcd, the name in DNS, a move by re-adding
// the pod on the other NVE.
func testCNITool(t *testing.T, c *cniLab) {
	for _, tool := range []string{"etcdctl", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (test/run.sh installs it)", tool)
		}
	}
	if c.topo.CNINetwork != lab.CNINetwork || c.topo.CNIBinDir != c.bin {
		t.Fatalf("topology: cni_network %q, cni_bin_dir %q; want %q, %q", c.topo.CNINetwork, c.topo.CNIBinDir, lab.CNINetwork, c.bin)
	}
	const pod = "K8S_POD_NAMESPACE=web;K8S_POD_NAME=front-0"
	const task = "web_front-0"
	a := container(t, netns.Unique("cnia"))
	c.delOnCleanup(t, 0, pod, lab.CNINetwork, a, c.topo.NVEs[0].CNINetconfDir, c.topo.CNIBinDir)
	out, err := c.cnitool(t, 0, pod, "add", lab.CNINetwork, a)
	if err != nil {
		t.Fatal(err)
	}
	var res current.Result
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) != 1 {
		t.Fatalf("cnitool add: result %s: %v", out, err)
	}
	sir, _ := netip.AddrFromSlice(res.IPs[0].Address.IP)
	pingFrom(t, a, c.topo.Tasks[1].SIR)
	if _, err := c.cnitool(t, 0, pod, "check", lab.CNINetwork, a); err != nil {
		t.Error(err)
	}
	if _, err := c.cnitool(t, 0, pod, "status", lab.CNINetwork, a); err != nil {
		t.Error(err)
	}
	key := mapsrv.TaskKey(lab.Domain, ila.IdentifierOf(sir))
	if got := c.etcdctl(t, key); !strings.Contains(got, `"nve":"`+c.topo.NVEs[0].Name+`"`) || !strings.Contains(got, `"name":"`+task+`"`) {
		t.Errorf("etcdctl get %s:\n%s\nwant %s on %s", key, got, task, c.topo.NVEs[0].Name)
	}
	dig := func() string {
		out, err := exec.Command("ip", "netns", "exec", c.topo.DNS.Netns, "dig", "+short", "+time=1", "+tries=3",
			"@"+netip.MustParseAddrPort(c.topo.DNS.Addr).Addr().String(), task+"."+lab.IPv6Tenant+"."+c.topo.DNS.Zone, "AAAA").CombinedOutput()
		if err != nil {
			t.Fatalf("dig: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	var got string
	for range 20 {
		if got = dig(); got == sir.String() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != sir.String() {
		t.Errorf("dig %s: %q, want %s", task, got, sir)
	}

	// The pod re-created on nve2 (its old sandbox not yet deleted): nve2's
	// claim of the task is its own word, refused (the ADD fails, kubelet
	// would retry it) and nothing moves, unless an orchestrator expects
	// the task there (docs/registration.md 7.4). Once it does: same
	// address, the mapping moves.
	b := container(t, netns.Unique("cnib"))
	c.delOnCleanup(t, 1, pod, lab.CNINetwork, b, c.topo.NVEs[1].CNINetconfDir, c.topo.CNIBinDir)
	if out, err := c.cnitool(t, 1, pod, "add", lab.CNINetwork, b); err == nil || !strings.Contains(string(out)+err.Error(), "claim not justified") {
		t.Errorf("cnitool add on %s while the pod lives on %s, not expected: %v, want the claim refused\n%s", c.topo.NVEs[1].Name, c.topo.NVEs[0].Name, err, out)
	}
	if got := c.etcdctl(t, key); !strings.Contains(got, `"nve":"`+c.topo.NVEs[0].Name+`"`) {
		t.Errorf("after the refused re-add on %s, etcdctl get %s:\n%s\nwant it still on %s", c.topo.NVEs[1].Name, key, got, c.topo.NVEs[0].Name)
	}
	if _, err := c.api(t).Expect(t.Context(), "default", task, mapsrv.ExpectBody{NVE: c.topo.NVEs[1].Name}); err != nil {
		t.Fatalf("expect %s on %s: %v", task, c.topo.NVEs[1].Name, err)
	}
	out, err = c.cnitool(t, 1, pod, "add", lab.CNINetwork, b)
	if err != nil {
		t.Fatal(err)
	}
	var res2 current.Result
	if err := json.Unmarshal(out, &res2); err != nil || len(res2.IPs) != 1 || !res2.IPs[0].Address.IP.Equal(res.IPs[0].Address.IP) {
		t.Fatalf("cnitool add on %s: %s (%v); want the address %v kept", c.topo.NVEs[1].Name, out, err, sir)
	}
	if got := c.etcdctl(t, key); !strings.Contains(got, `"nve":"`+c.topo.NVEs[1].Name+`"`) {
		t.Errorf("after the re-add on %s, etcdctl get %s:\n%s", c.topo.NVEs[1].Name, key, got)
	}
	pingFrom(t, b, c.topo.Tasks[0].SIR)
	// The old sandbox goes: DEL twice, the mapping stays on nve2.
	for i := range 2 {
		if _, err := c.cnitool(t, 0, pod, "del", lab.CNINetwork, a); err != nil {
			t.Fatalf("del #%d: %v", i+1, err)
		}
	}
	if got := c.etcdctl(t, key); !strings.Contains(got, `"nve":"`+c.topo.NVEs[1].Name+`"`) {
		t.Errorf("after deleting the old sandbox, etcdctl get %s:\n%s\nwant it on %s", key, got, c.topo.NVEs[1].Name)
	}
	if _, err := c.cnitool(t, 1, pod, "check", lab.CNINetwork, b); err != nil {
		t.Error(err)
	}
	if _, err := c.cnitool(t, 1, pod, "del", lab.CNINetwork, b); err != nil {
		t.Fatal(err)
	}
}

// testHostLocal: the address from Debian's host-local IPAM plugin, run by
// cnitool through a config list of the user's.
func testHostLocal(t *testing.T, c *cniLab) {
	const hostLocal = "/usr/lib/cni/host-local"
	if _, err := os.Stat(hostLocal); err != nil {
		t.Skip("host-local not installed (apt containernetworking-plugins; test/run.sh installs it)")
	}
	dir := t.TempDir()
	// Debian's host-local speaks CNI up to 1.0.0.
	conf := map[string]any{"cniVersion": "1.0.0", "name": "ila-hl", "plugins": []map[string]any{{
		"type":        "ila-cni",
		"ilad_socket": filepath.Join(c.topo.StateDir, "ilad-"+c.topo.NVEs[0].Name+".sock"),
		"nve_netns":   "/var/run/netns/" + c.topo.NVEs[0].Netns,
		"data_dir":    filepath.Join(dir, "data"),
		"task_name":   "container-id",
		"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(dir, "ipam"),
			"ranges": [][]map[string]string{{{"subnet": lab.SIRPrefix.String(), "rangeStart": "fd00:5151::2000:0:0:1000", "rangeEnd": "fd00:5151::2000:0:0:10ff"}}}},
	}}}
	b, _ := json.Marshal(conf)
	if err := os.WriteFile(filepath.Join(dir, "ila-hl.conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	a := container(t, netns.Unique("cnih"))
	c.delOnCleanup(t, 0, "", "ila-hl", a, dir, c.bin+":"+filepath.Dir(hostLocal))
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(filepath.Join(c.bin, "cnitool"), args...)
		cmd.Env = append(os.Environ(), "NETCONFPATH="+dir, "CNI_PATH="+c.bin+":"+filepath.Dir(hostLocal))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cnitool %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return out
	}
	var res current.Result
	if out := run("add", "ila-hl", a); json.Unmarshal(out, &res) != nil || len(res.IPs) != 1 || res.IPs[0].Address.IP.String() != "fd00:5151::2000:0:0:1000" {
		t.Fatalf("add: %s: want host-local's first address", out)
	}
	pingFrom(t, a, c.topo.Tasks[1].SIR)
	run("del", "ila-hl", a)
	run("del", "ila-hl", a)
	leases, _ := filepath.Glob(filepath.Join(dir, "ipam", "ila-hl", "fd00*"))
	if len(leases) != 0 {
		t.Errorf("host-local leases left after DEL: %v", leases)
	}
}

// v4Task is the lab's IPv4 tenant task on NVE i.
func (c *cniLab) v4Task(t *testing.T, i int) lab.Task {
	t.Helper()
	for _, task := range c.topo.Tasks {
		if task.IPv4.IsValid() && task.NVE == c.topo.NVEs[i].Name {
			return task
		}
	}
	t.Fatalf("no IPv4 tenant task on %s", c.topo.NVEs[i].Name)
	return lab.Task{}
}

// testIPv4: an IPv4 tenant's pod gets its SIR address and an IPv4
// address allocated by mapsrv (a VN-IPv4 identifier), with the gateway and
// routes of the config, and reaches the tenant's task on the other NVE
// over the VXLAN of its VNI; cnitool does the same with the lab's ila-v4
// network.
func testIPv4(t *testing.T, c *cniLab) {
	ctx := t.Context()
	gw := netip.MustParseAddr("10.100.0.254")
	conf := c.pluginConfOf(t, 0, lab.CNIConfFileIPv4, func(p map[string]any) {
		p["ipv4"] = map[string]any{"vni": lab.IPv4VNI, "subnet": lab.IPv4Net.String(), "gateway": gw.String(), "routes": []string{"192.0.2.0/24"}}
	})
	path := container(t, netns.Unique("cni4"))
	args := &skel.CmdArgs{ContainerID: "v4c1", Netns: path, IfName: "eth0", StdinData: conf, Args: "K8S_POD_NAMESPACE=legacy;K8S_POD_NAME=app-0"}
	res, r := addOK(t, args)
	if len(res.IPs) != 2 {
		t.Fatalf("result %s: want the SIR address and an IPv4 address", r)
	}
	sir, _ := netip.AddrFromSlice(res.IPs[0].Address.IP)
	v4, _ := netip.AddrFromSlice(res.IPs[1].Address.IP.To4())
	id, _ := ila.NewVNIPv4(lab.IPv4VNI, v4)
	if ones, _ := res.IPs[1].Address.Mask.Size(); ones != lab.IPv4Net.Bits() || !lab.IPv4Net.Contains(v4) || v4 == gw || !res.IPs[1].Gateway.Equal(net.IP(gw.AsSlice())) {
		t.Fatalf("IPv4 %v via %v: want an address of %v (not the gateway %v) via it", res.IPs[1].Address, res.IPs[1].Gateway, lab.IPv4Net, gw)
	}
	if ila.IdentifierOf(sir) != id || res.IPs[0].Gateway.String() != "fe80::1" {
		t.Fatalf("SIR %v via %v: want the VN-IPv4 identifier %v via fe80::1", sir, res.IPs[0].Gateway, id)
	}
	if len(res.Routes) != 2 || res.Routes[1].Dst.String() != "192.0.2.0/24" || !res.Routes[1].GW.Equal(net.IP(gw.AsSlice())) {
		t.Errorf("routes %v: want ::/0 via fe80::1 and 192.0.2.0/24 via %v", res.Routes, gw)
	}
	if out, _ := exec.Command("ip", "-n", filepath.Base(path), "-4", "route", "show", "192.0.2.0/24").CombinedOutput(); !strings.Contains(string(out), "via "+gw.String()) {
		t.Errorf("container route 192.0.2.0/24: %q, want via %v", out, gw)
	}
	rec, err := c.api(t).Task(ctx, lab.IPv4Tenant, "legacy_app-0")
	if err != nil || rec.NVE != c.topo.NVEs[0].Name || rec.IPv4 != v4 || rec.VNI != lab.IPv4VNI || rec.SIR != sir {
		t.Fatalf("mapping of legacy_app-0: %+v, %v; want %v (vni %d, %v) on %s", rec, err, v4, lab.IPv4VNI, sir, c.topo.NVEs[0].Name)
	}
	pingFrom(t, path, c.v4Task(t, 1).IPv4)
	if err := testutils.CmdCheckWithArgs(args, func() error { return cmdCheck(args) }); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	for i := range 2 {
		if err := testutils.CmdDelWithArgs(args, func() error { return cmdDel(args) }); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}

	// cnitool with the lab's ila-v4 network, on nve2.
	if c.topo.CNINetworkIPv4 != lab.CNINetworkIPv4 {
		t.Fatalf("topology: cni_network_ipv4 %q, want %q", c.topo.CNINetworkIPv4, lab.CNINetworkIPv4)
	}
	const pod = "K8S_POD_NAMESPACE=legacy;K8S_POD_NAME=app-1"
	b := container(t, netns.Unique("cni4"))
	c.delOnCleanup(t, 1, pod, lab.CNINetworkIPv4, b, c.topo.NVEs[1].CNINetconfDir, c.topo.CNIBinDir)
	out, err := c.cnitool(t, 1, pod, "add", lab.CNINetworkIPv4, b)
	if err != nil {
		t.Fatal(err)
	}
	var res2 current.Result
	if err := json.Unmarshal(out, &res2); err != nil || len(res2.IPs) != 2 || res2.IPs[1].Address.IP.To4() == nil || res2.IPs[1].Gateway != nil {
		t.Fatalf("cnitool add %s: %s (%v); want the SIR and an on-link IPv4 address", lab.CNINetworkIPv4, out, err)
	}
	pingFrom(t, b, c.v4Task(t, 0).IPv4)
	if _, err := c.cnitool(t, 1, pod, "check", lab.CNINetworkIPv4, b); err != nil {
		t.Error(err)
	}
	if _, err := c.cnitool(t, 1, pod, "del", lab.CNINetworkIPv4, b); err != nil {
		t.Fatal(err)
	}
}

// taskOn returns NVE i's view of task name.
func (c *cniLab) taskOn(t *testing.T, i int, name string) (locator.TaskStatus, error) {
	t.Helper()
	cl, err := locator.NewClient(filepath.Join(c.topo.StateDir, "ilad-"+c.topo.NVEs[i].Name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	return cl.Task(t.Context(), name)
}

// waitMapping waits until the mapping of tenant/name is on NVE i.
func (c *cniLab) waitMapping(t *testing.T, ac *apiclient.Client, tenant, name string, i int) {
	t.Helper()
	var rec mapsrv.TaskRecord
	var err error
	for range 50 {
		if rec, err = ac.Task(t.Context(), tenant, name); err == nil && rec.NVE == c.topo.NVEs[i].Name {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("mapping of %s/%s: %+v, %v; want it on %s", tenant, name, rec, err, c.topo.NVEs[i].Name)
}

// testPrepare is KubeVirt's live migration through CNI: the target pod
// (another pod name, the VM's task named by ILA_TASK) is prepared, not
// registered, and the mapping moves on the task's first frame there or on
// an explicit commit; a target deleted before its commit (a failed
// migration) is aborted and moves nothing.
func testPrepare(t *testing.T, c *cniLab) {
	ac := c.api(t)
	const task = "vms_vm1"
	add := func(i int, id, podName string, prepare bool) (*skel.CmdArgs, netip.Addr) {
		t.Helper()
		cniArgs := "K8S_POD_NAMESPACE=vms;K8S_POD_NAME=" + podName + ";ILA_TASK=" + task
		if prepare {
			cniArgs += ";ILA_PREPARE=true"
		}
		a := &skel.CmdArgs{ContainerID: id, Netns: container(t, netns.Unique("cnip")), IfName: "eth0", StdinData: c.pluginConf(t, i, nil), Args: cniArgs}
		res, r := addOK(t, a)
		if len(res.IPs) != 1 {
			t.Fatalf("ADD %s on %s: result %v", podName, c.topo.NVEs[i].Name, r)
		}
		sir, _ := netip.AddrFromSlice(res.IPs[0].Address.IP)
		return a, sir
	}
	del := func(a *skel.CmdArgs) {
		t.Helper()
		if err := testutils.CmdDelWithArgs(a, func() error { return cmdDel(a) }); err != nil {
			t.Fatalf("DEL %s: %v", a.ContainerID, err)
		}
	}
	state := func(i int) locator.TaskStatus {
		t.Helper()
		st, err := c.taskOn(t, i, task)
		if err != nil {
			t.Fatalf("task %s on %s: %v", task, c.topo.NVEs[i].Name, err)
		}
		return st
	}

	src, sir := add(0, "vm1-a", "virt-launcher-vm1-a", false)
	c.waitMapping(t, ac, "default", task, 0)

	// The orchestrator (KubeVirt's migration controller) tells mapsrv to
	// expect the task on the target's NVE before the target pod's ADD:
	// without it mapsrv refuses the commit's claim (a prepared port is
	// the NVE's own word; docs/registration.md section 7.4).
	expect := func(i int) {
		t.Helper()
		if _, err := ac.Expect(t.Context(), "default", task, mapsrv.ExpectBody{NVE: c.topo.NVEs[i].Name, TTL: ila.Duration(time.Minute)}); err != nil {
			t.Fatalf("expect %s on %s: %v", task, c.topo.NVEs[i].Name, err)
		}
	}

	// Without an expectation, a target that commits (its first frame)
	// does not move the mapping: mapsrv refuses the claim.
	rogue, _ := add(1, "vm1-x", "virt-launcher-vm1-x", true)
	// Its first frame (the reply cannot come back: the mapping stays).
	_ = exec.Command("ip", "netns", "exec", filepath.Base(rogue.Netns), "ping", "-c", "1", "-W", "1", c.topo.Tasks[0].SIR.String()).Run()
	for i := 0; ; i++ {
		st := state(1)
		if st.State == locator.StateActive && st.Error != "" {
			break // committed; its claim refused
		}
		if i == 50 {
			t.Fatalf("unexpected target after its first frame: state %q, error %q; want committed with the claim refused", st.State, st.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if rec, err := ac.Task(t.Context(), "default", task); err != nil || rec.NVE != c.topo.NVEs[0].Name {
		t.Fatalf("mapping after an unexpected target's commit: %+v, %v; want it still on %s", rec, err, c.topo.NVEs[0].Name)
	}
	del(rogue)

	// The migration target on nve2: same address, prepared, mapping stays.
	expect(1)
	dst, sir2 := add(1, "vm1-b", "virt-launcher-vm1-b", true)
	if sir2 != sir {
		t.Fatalf("target pod got %v, want the VM's address %v", sir2, sir)
	}
	if st := state(1); st.State != locator.StatePrepared || st.Registered {
		t.Fatalf("target on %s: state %q, registered %v; want prepared, not registered", c.topo.NVEs[1].Name, st.State, st.Registered)
	}
	if err := testutils.CmdCheckWithArgs(dst, func() error { return cmdCheck(dst) }); err != nil {
		t.Errorf("CHECK of the prepared target: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if rec, err := ac.Task(t.Context(), "default", task); err != nil || rec.NVE != c.topo.NVEs[0].Name {
		t.Fatalf("mapping while prepared: %+v, %v; want it still on %s", rec, err, c.topo.NVEs[0].Name)
	}
	// The guest runs at the target: its first packet commits.
	pingFrom(t, dst.Netns, c.topo.Tasks[0].SIR)
	c.waitMapping(t, ac, "default", task, 1)
	if st := state(1); st.State != locator.StateActive || st.CommittedBy != locator.CommitByFrame {
		t.Errorf("target after its first frame: state %q, committed by %q; want active by %q", st.State, st.CommittedBy, locator.CommitByFrame)
	}
	// The source pod goes: the mapping stays at the target.
	del(src)
	time.Sleep(300 * time.Millisecond)
	c.waitMapping(t, ac, "default", task, 1)

	// A failed migration back to nve1: the target pod is deleted before
	// any commit; nothing of it is left, the mapping did not move.
	expect(0)
	failed, _ := add(0, "vm1-c", "virt-launcher-vm1-c", true)
	if st := state(0); st.State != locator.StatePrepared {
		t.Fatalf("second target: state %q, want prepared", st.State)
	}
	del(failed)
	if _, err := c.taskOn(t, 0, task); !errors.Is(err, locator.ErrNotFound) {
		t.Errorf("aborted target: ilad on %s still has %s (%v)", c.topo.NVEs[0].Name, task, err)
	}
	if linkIn(t, "/var/run/netns/"+c.topo.NVEs[0].Netns, hostIfname("ila", "vm1-c", "eth0")) {
		t.Errorf("aborted target: veth left")
	}
	if err := ac.Unexpect(t.Context(), "default", task); err != nil { // the orchestrator calls the migration off
		t.Errorf("unexpect: %v", err)
	}
	c.waitMapping(t, ac, "default", task, 1)

	// An explicit commit (ilactl commit, or the orchestrator through
	// ilad's API) before the guest sent anything.
	expect(0)
	back, _ := add(0, "vm1-d", "virt-launcher-vm1-d", true)
	cl, err := locator.NewClient(filepath.Join(c.topo.StateDir, "ilad-"+c.topo.NVEs[0].Name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Commit(t.Context(), task); err != nil {
		t.Fatalf("commit: %v", err)
	}
	c.waitMapping(t, ac, "default", task, 0)
	if st := state(0); st.CommittedBy != locator.CommitByAPI {
		t.Errorf("committed by %q, want %q", st.CommittedBy, locator.CommitByAPI)
	}
	del(dst) // the old target, now a source: the mapping stays
	time.Sleep(300 * time.Millisecond)
	c.waitMapping(t, ac, "default", task, 0)
	pingFrom(t, back.Netns, c.topo.Tasks[1].SIR)
	del(back)
}
