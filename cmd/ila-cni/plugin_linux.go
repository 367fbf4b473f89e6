//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// Plugin-specific error codes (the spec reserves 1-99).
const (
	errRefused  uint = 100 // the mapping service refused the task
	errConflict uint = 101 // name or address held by another task here
)

// gateway is every NVE's anycast gateway on task ports.
var gateway = ila.GatewayLinkLocal()

// opTimeout bounds one CNI operation's calls to ilad and mapsrv.
const opTimeout = 20 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == "install" {
		err := install(os.Args[2:], os.Stderr)
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ila-cni:", err)
			os.Exit(1)
		}
		return
	}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus},
		version.PluginSupports("0.4.0", "1.0.0", "1.1.0"),
		"ila-cni: ILA tasks for containers (github.com/ilamesh/ilamesh)")
}

func cniErr(code uint, format string, a ...any) *types.Error {
	return types.NewError(code, fmt.Sprintf(format, a...), "")
}

// env is what every command needs: the config, the NVE's namespace and
// the clients.
type env struct {
	conf  *NetConf
	nve   ns.NetNS
	ilad  *locator.Client
	ctx   context.Context
	close func()
}

func open(stdin []byte) (*env, error) {
	conf, err := parseConf(stdin)
	if err != nil {
		return nil, err
	}
	e := &env{conf: conf}
	if conf.NVENetns != "" {
		e.nve, err = ns.GetNS(conf.NVENetns)
		if err != nil {
			return nil, cniErr(types.ErrInvalidNetworkConfig, "nve_netns %s: %v", conf.NVENetns, err)
		}
	} else if e.nve, err = ns.GetCurrentNS(); err != nil {
		return nil, cniErr(types.ErrInternal, "own network namespace: %v", err)
	}
	sock := conf.IladSocket
	if sock == "" {
		node := conf.Node
		if node == "" {
			node, _ = os.Hostname()
		}
		sock = locator.DefaultAPISocket(node)
	}
	if e.ilad, err = locator.NewClient(sock); err != nil {
		e.nve.Close()
		return nil, cniErr(types.ErrInvalidNetworkConfig, "ilad_socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	e.ctx = ctx
	e.close = func() { cancel(); e.nve.Close() }
	return e, nil
}

// iladErr turns an ilad API error into a CNI error.
func iladErr(what string, err error) *types.Error {
	var rej *locator.RejectedError
	var api *locator.APIError
	switch {
	case errors.As(err, &rej):
		return cniErr(errRefused, "%s: the mapping service refused: %v", what, err)
	case errors.Is(err, locator.ErrExists):
		return cniErr(errConflict, "%s: %v", what, err)
	case errors.As(err, &api):
		return cniErr(types.ErrInternal, "%s: %v", what, err)
	default:
		return cniErr(types.ErrTryAgainLater, "%s: ilad unreachable: %v", what, err)
	}
}

// mapsrvClient is a client of mapsrv's API whose connections are opened in
// the NVE's namespace.
func (e *env) mapsrvClient() (*apiclient.Client, error) {
	var tok string
	if f := e.conf.Mapsrv.TokenFile; f != "" {
		toks, err := mapsrv.ReadTokenFile(f)
		if err != nil || len(toks) == 0 {
			return nil, cniErr(types.ErrInvalidNetworkConfig, "mapsrv.token_file %s: no token (%v)", f, err)
		}
		tok = toks[0]
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := e.nve.Do(func(ns.NetNS) error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	if f := e.conf.Mapsrv.CAFile; f != "" {
		tc, err := apiclient.TLSConfig(f)
		if err != nil {
			return nil, cniErr(types.ErrInvalidNetworkConfig, "mapsrv.ca_file: %v", err)
		}
		tr.TLSClientConfig = tc
	}
	c, err := apiclient.New(apiclient.Config{URL: e.conf.Mapsrv.URL, Token: tok, HTTPClient: &http.Client{Transport: tr}, Timeout: 10 * time.Second})
	if err != nil {
		return nil, cniErr(types.ErrInvalidNetworkConfig, "mapsrv: %v", err)
	}
	return c, nil
}

// mapsrvErr turns a mapsrv API error into a CNI error.
func mapsrvErr(what string, err error) *types.Error {
	switch {
	case errors.Is(err, mapsrv.ErrNotFound), errors.Is(err, mapsrv.ErrInvalid), errors.Is(err, apiclient.ErrUnauthorized):
		return cniErr(types.ErrInvalidNetworkConfig, "%s: %v", what, err)
	case errors.Is(err, mapsrv.ErrConflict):
		return cniErr(errConflict, "%s: %v", what, err)
	case errors.Is(err, mapsrv.ErrForbidden), errors.Is(err, mapsrv.ErrDuplicate):
		return cniErr(errRefused, "%s: %v", what, err)
	default:
		return cniErr(types.ErrTryAgainLater, "%s: mapping service unreachable: %v", what, err)
	}
}

// The commands, each given its config, the NVE's namespace and the
// clients, closed after it.
var (
	cmdAdd    = withEnv(add)
	cmdDel    = withEnv(del)
	cmdCheck  = withEnv(check)
	cmdGC     = withEnv(gc)
	cmdStatus = withEnv(status)
)

func withEnv(f func(*env, *skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		e, err := open(args.StdinData)
		if err != nil {
			return err
		}
		defer e.close()
		return f(e, args)
	}
}

// undo is a stack of clean-ups run when an ADD fails.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }
func (u undo) run() {
	for _, f := range slices.Backward(u) {
		f()
	}
}

func add(e *env, args *skel.CmdArgs) (err error) {
	c := e.conf
	name, err := c.taskName(args.ContainerID, args.Args)
	if err != nil {
		return err
	}
	aa, err := c.attachArgs(args.Args)
	if err != nil {
		return err
	}
	if args.IfName == "" || len(args.IfName) > 15 {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME %q: want 1 to 15 characters", args.IfName)
	}
	cont, err := ns.GetNS(args.Netns)
	if err != nil {
		return cniErr(types.ErrUnknownContainer, "container netns %s: %v", args.Netns, err)
	}
	defer cont.Close()
	// ilad first: nothing is allocated when it is down.
	if _, err := e.ilad.Stats(e.ctx); err != nil {
		return iladErr("ilad", err)
	}
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()

	var prev *current.Result
	att := attachment{ContainerID: args.ContainerID, IfName: args.IfName, HostIf: hostIfname(c.Name, args.ContainerID, args.IfName), Task: name, Tenant: c.Tenant, Address: c.Address, Prepared: aa.Prepare}
	switch c.Address {
	case addrMapsrv:
		mc, err := e.mapsrvClient()
		if err != nil {
			return err
		}
		req := mapsrv.AllocRequest{Domain: c.Domain, Tenant: c.Tenant, Name: name}
		if v := c.IPv4; v != nil {
			req.VNI, req.IPv4Net = v.VNI, v.Subnet
			if v.Gateway.IsValid() {
				req.IPv4Exclude = []netip.Addr{v.Gateway}
			}
		}
		a, err := mc.Allocate(e.ctx, req)
		if err != nil {
			return mapsrvErr("allocate an address", err)
		}
		att.SIR, att.IPv4, att.Allocated = a.SIR, a.IPv4, a.New
		if a.New {
			u.push(func() { _ = mc.Release(context.Background(), c.Tenant, name) })
		}
	case addrIPAM:
		r, err := ipam.ExecAdd(c.IPAM.Type, args.StdinData)
		if err != nil {
			return cniErr(types.ErrTryAgainLater, "ipam %s: %v", c.IPAM.Type, err)
		}
		u.push(func() { _ = ipam.ExecDel(c.IPAM.Type, args.StdinData) })
		res, err := current.NewResultFromResult(r)
		if err != nil {
			return cniErr(types.ErrDecodingFailure, "ipam %s result: %v", c.IPAM.Type, err)
		}
		if att.SIR, err = firstIPv6(res); err != nil {
			return cniErr(types.ErrInvalidNetworkConfig, "ipam %s: %v", c.IPAM.Type, err)
		}
	case addrPrev:
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return cniErr(types.ErrDecodingFailure, "prevResult: %v", err)
		}
		if c.PrevResult == nil {
			return cniErr(types.ErrInvalidNetworkConfig, "address \"prev\": no prevResult (ila-cni is not chained after a plugin that assigned an address)")
		}
		if prev, err = current.NewResultFromResult(c.PrevResult); err != nil {
			return cniErr(types.ErrDecodingFailure, "prevResult: %v", err)
		}
		if att.SIR, err = firstIPv6(prev); err != nil {
			return cniErr(types.ErrInvalidNetworkConfig, "prevResult: %v", err)
		}
	}

	// The veth pair: the container end in its namespace, the other in
	// the NVE's.
	var hostIf, contIf net.Interface
	err = cont.Do(func(ns.NetNS) error {
		var err error
		hostIf, contIf, err = ip.SetupVethWithName(args.IfName, att.HostIf, c.MTU, "", e.nve)
		if err != nil {
			return err
		}
		// The address is unique by construction: no DAD, no wait; and
		// the routes are ours, not learnt from the NVE's advertisements.
		for _, k := range []string{"accept_dad", "accept_ra"} {
			if _, err := sysctl.Sysctl("net/ipv6/conf/"+args.IfName+"/"+k, "0"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return cniErr(types.ErrInternal, "veth %s (container) - %s (NVE): %v", args.IfName, att.HostIf, err)
	}
	u.push(func() { _ = e.nve.Do(func(ns.NetNS) error { return ip.DelLinkByName(att.HostIf) }) })

	mac, err := macOf(contIf.HardwareAddr)
	if err != nil {
		return cniErr(types.ErrInternal, "veth %s: %v", args.IfName, err)
	}
	spec := locator.TaskSpec{Name: name, Tenant: c.Tenant, Domain: c.Domain, Iface: att.HostIf, SIR: att.SIR, MAC: mac}
	if c.IPv4 != nil {
		spec.IPv4, spec.VNI = att.IPv4, c.IPv4.VNI
	}
	if !att.Allocated && !aa.Prepare {
		// The address may be registered on another NVE (the pod re-created
		// here while its old sandbox lives on): the port is prepared here
		// in standby first, which, while an orchestrator's expectation
		// names this NVE, justifies the claim that follows
		// (docs/registration.md section 7.4); without one the claim is
		// refused (code 100) until the old pod is gone. A prepared
		// migration target's commit sends its standby registration itself.
		sb := spec
		sb.Standby = true
		if _, err := e.ilad.Attach(e.ctx, sb); err != nil {
			return iladErr("prepare task "+name, err)
		}
		u.push(func() { _ = e.ilad.Detach(context.Background(), name) })
	}
	var st locator.TaskStatus
	if aa.Prepare {
		// A migration target: ready, not registered; the first frame of
		// the task here (or `ilactl commit`) moves the mapping.
		if st, err = e.ilad.Prepare(e.ctx, spec); err != nil {
			return iladErr("prepare task "+name, err)
		}
		u.push(func() { _ = e.ilad.Abort(context.Background(), name) })
	} else {
		if st, err = e.ilad.Attach(e.ctx, spec); err != nil {
			return iladErr("attach task "+name, err)
		}
		u.push(func() { _ = e.ilad.Detach(context.Background(), name) })
	}
	if !aa.Prepare && st.Error != "" && !st.Registered {
		// Not refused, not yet answered: ilad keeps registering. Say so
		// on stderr (the runtime logs it); the ADD stands.
		fmt.Fprintf(os.Stderr, "ila-cni: task %s attached, registration pending: %s\n", name, st.Error)
	}

	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String()},
			{Name: contIf.Name, Mac: contIf.HardwareAddr.String(), Sandbox: args.Netns},
		},
		IPs:    []*current.IPConfig{{Interface: current.Int(1), Address: net.IPNet{IP: net.IP(att.SIR.AsSlice()), Mask: net.CIDRMask(128, 128)}, Gateway: net.IP(gateway.AsSlice())}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: net.IP(gateway.AsSlice())}},
		DNS:    c.DNS,
	}
	if v := c.IPv4; v != nil {
		ipc := &current.IPConfig{Interface: current.Int(1), Address: net.IPNet{IP: net.IP(att.IPv4.AsSlice()), Mask: net.CIDRMask(v.Subnet.Bits(), 32)}}
		if v.Gateway.IsValid() {
			ipc.Gateway = net.IP(v.Gateway.AsSlice())
			for _, r := range v.Routes {
				res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: net.IP(r.Addr().AsSlice()), Mask: net.CIDRMask(r.Bits(), 32)}, GW: ipc.Gateway})
			}
		}
		res.IPs = append(res.IPs, ipc)
	}
	if err := cont.Do(func(ns.NetNS) error { return ipam.ConfigureIface(args.IfName, res) }); err != nil {
		return cniErr(types.ErrInternal, "configure %s: %v", args.IfName, err)
	}
	if err := writeAttachment(c, att); err != nil {
		return cniErr(types.ErrIOFailure, "record the attachment: %v", err)
	}
	if prev != nil {
		// Chained: keep what came before, add ours.
		off := len(prev.Interfaces)
		res.Interfaces = append(prev.Interfaces, res.Interfaces...)
		for _, ipc := range res.IPs {
			ipc.Interface = current.Int(off + 1)
		}
		res.Routes = append(prev.Routes, res.Routes...)
		if c.DNS.IsEmpty() {
			res.DNS = prev.DNS
		}
	}
	return types.PrintResult(res, c.CNIVersion)
}

func firstIPv6(r *current.Result) (netip.Addr, error) {
	for _, ipc := range r.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok && a.Is6() && !a.Is4In6() {
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("no IPv6 address to use as the SIR address")
}

func del(e *env, args *skel.CmdArgs) error {
	c := e.conf
	hostIf := hostIfname(c.Name, args.ContainerID, args.IfName)
	att, err := readAttachment(c, hostIf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return cniErr(types.ErrIOFailure, "attachment %s: %v", hostIf, err)
	}
	if att.Task == "" {
		// Not recorded (an ADD that failed, a lost data dir): the name
		// from the arguments, if they give one.
		att = attachment{ContainerID: args.ContainerID, IfName: args.IfName, HostIf: hostIf, Tenant: c.Tenant, Address: c.Address}
		att.Task, _ = c.taskName(args.ContainerID, args.Args)
	}
	return e.remove(att, args.StdinData)
}

// remove undoes an attachment; what is already gone is not an error.
func (e *env) remove(att attachment, stdin []byte) error {
	c := e.conf
	if att.Task != "" {
		tasks, err := e.ilad.Tasks(e.ctx)
		if err != nil {
			return iladErr("list ilad's tasks", err)
		}
		for _, t := range tasks {
			// Only the task on this veth: the same name attached by a
			// newer ADD (another container of the pod) stays.
			if t.Name != att.Task || t.Iface != att.HostIf {
				continue
			}
			if t.State == locator.StatePrepared {
				// A migration target deleted before its commit (the
				// migration failed): the mapping stays where it is.
				if err := e.ilad.Abort(e.ctx, att.Task); err != nil && !errors.Is(err, locator.ErrNotFound) && !errors.Is(err, locator.ErrNotPrepared) {
					return iladErr("abort prepared task "+att.Task, err)
				}
				if err == nil {
					continue
				}
			}
			if err := e.ilad.Detach(e.ctx, att.Task); err != nil && !errors.Is(err, locator.ErrNotFound) {
				return iladErr("detach task "+att.Task, err)
			}
		}
	}
	err := e.nve.Do(func(ns.NetNS) error { return ip.DelLinkByName(att.HostIf) })
	if err != nil && !errors.Is(err, ip.ErrLinkNotFound) {
		return cniErr(types.ErrInternal, "delete veth %s: %v", att.HostIf, err)
	}
	if c.Address == addrIPAM && att.Address == addrIPAM {
		if err := ipam.ExecDel(c.IPAM.Type, stdin); err != nil {
			return cniErr(types.ErrTryAgainLater, "ipam %s: %v", c.IPAM.Type, err)
		}
	}
	if c.ReleaseOnDel && att.Task != "" {
		mc, err := e.mapsrvClient()
		if err != nil {
			return err
		}
		if err := mc.Release(e.ctx, att.Tenant, att.Task); err != nil && !errors.Is(err, mapsrv.ErrNotFound) {
			return mapsrvErr("release the address of "+att.Task, err)
		}
	}
	if err := os.Remove(attachmentPath(c, att.HostIf)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return cniErr(types.ErrIOFailure, "attachment %s: %v", att.HostIf, err)
	}
	return nil
}

func check(e *env, args *skel.CmdArgs) error {
	c := e.conf
	hostIf := hostIfname(c.Name, args.ContainerID, args.IfName)
	att, err := readAttachment(c, hostIf)
	if err != nil {
		return cniErr(types.ErrUnknownContainer, "no attachment of container %s (%s): %v", args.ContainerID, args.IfName, err)
	}
	tasks, err := e.ilad.Tasks(e.ctx)
	if err != nil {
		return iladErr("list ilad's tasks", err)
	}
	i := slices.IndexFunc(tasks, func(t locator.TaskStatus) bool { return t.Name == att.Task })
	switch {
	case i < 0:
		return cniErr(types.ErrInternal, "task %s: not attached to ilad here (moved to another NVE?)", att.Task)
	case tasks[i].Iface != att.HostIf || tasks[i].SIR != att.SIR || tasks[i].IPv4 != att.IPv4:
		return cniErr(types.ErrInternal, "task %s: attached on %s with %s %v, want %s with %s %v", att.Task, tasks[i].Iface, tasks[i].SIR, tasks[i].IPv4, att.HostIf, att.SIR, att.IPv4)
	case tasks[i].State == locator.StatePrepared && att.Prepared:
		// A migration target waiting for its commit: as it should be.
	case !tasks[i].Registered:
		return cniErr(types.ErrInternal, "task %s: not registered with the mapping service (%s)", att.Task, tasks[i].Error)
	}
	cont, err := ns.GetNS(args.Netns)
	if err != nil {
		return cniErr(types.ErrUnknownContainer, "container netns %s: %v", args.Netns, err)
	}
	defer cont.Close()
	return cont.Do(func(ns.NetNS) error {
		ifc, err := net.InterfaceByName(args.IfName)
		if err != nil {
			return cniErr(types.ErrInternal, "container interface %s: %v", args.IfName, err)
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return cniErr(types.ErrInternal, "addresses of %s: %v", args.IfName, err)
		}
		for _, want := range []netip.Addr{att.SIR, att.IPv4} {
			if want.IsValid() && !slices.ContainsFunc(addrs, func(a net.Addr) bool {
				n, ok := a.(*net.IPNet)
				if !ok {
					return false
				}
				x, _ := netip.AddrFromSlice(n.IP)
				return x.Unmap() == want
			}) {
				return cniErr(types.ErrInternal, "container interface %s: no address %s", args.IfName, want)
			}
		}
		return nil
	})
}

// gc removes the attachments of this network that the runtime no
// longer lists (cni.dev/valid-attachments).
func gc(e *env, args *skel.CmdArgs) error {
	c := e.conf
	valid := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[hostIfname(c.Name, a.ContainerID, a.IfName)] = true
	}
	files, err := os.ReadDir(filepath.Join(c.DataDir, c.Name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return cniErr(types.ErrIOFailure, "data dir: %v", err)
	}
	var errs []error
	for _, f := range files {
		if valid[f.Name()] || strings.HasPrefix(f.Name(), ".") {
			continue
		}
		att, err := readAttachment(c, f.Name())
		if err != nil {
			errs = append(errs, fmt.Errorf("attachment %s: %w", f.Name(), err))
			continue
		}
		if err := e.remove(att, args.StdinData); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return cniErr(types.ErrInternal, "gc: %v", errors.Join(errs...))
	}
	return nil
}

// status: ilad answers and its mapping watch is synced; mapsrv answers
// when it allocates the addresses.
func status(e *env, _ *skel.CmdArgs) error {
	st, err := e.ilad.Stats(e.ctx)
	if err != nil {
		return cniErr(types.ErrPluginNotAvailable, "ilad: %v", err)
	}
	if !st.Synced {
		return cniErr(types.ErrPluginNotAvailable, "ilad: mapping watch not synced yet")
	}
	if e.conf.Address == addrMapsrv {
		mc, err := e.mapsrvClient()
		if err != nil {
			return err
		}
		if err := mc.Health(e.ctx); err != nil {
			return cniErr(types.ErrPluginNotAvailable, "mapping service: %v", err)
		}
	}
	return nil
}

func attachmentPath(c *NetConf, hostIf string) string {
	return filepath.Join(c.DataDir, c.Name, hostIf)
}

func writeAttachment(c *NetConf, att attachment) error {
	b, err := json.Marshal(att)
	if err != nil {
		return err
	}
	p := attachmentPath(c, att.HostIf)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(p), "."+att.HostIf+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func readAttachment(c *NetConf, hostIf string) (attachment, error) {
	var att attachment
	b, err := os.ReadFile(attachmentPath(c, hostIf))
	if err != nil {
		return att, err
	}
	if err := json.Unmarshal(b, &att); err != nil {
		return att, fmt.Errorf("decode: %w", err)
	}
	if att.HostIf != hostIf || att.Task == "" {
		return att, fmt.Errorf("does not match its file name or has no task")
	}
	return att, nil
}
