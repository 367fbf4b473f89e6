package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ilamesh/ilamesh/ila"
)

// NetConf is ila-cni's network configuration (the CNI "plugins" entry).
// Every field but the CNI ones is optional.
type NetConf struct {
	types.PluginConf

	// IladSocket is the local API of the NVE's ilad: a unix socket path or
	// HOST:PORT [locator.DefaultAPISocket(Node)].
	IladSocket string `json:"ilad_socket,omitempty"`
	// Node names the NVE when IladSocket is not given [the host name].
	Node string `json:"node,omitempty"`
	// NVENetns is the network namespace of the NVE (where ilad's task
	// ports live), as a path [the plugin's own namespace: the host]. The
	// lab sets it: its NVEs are namespaces. mapsrv is dialled from there.
	NVENetns string `json:"nve_netns,omitempty"`
	// Domain is the ILA domain [the domain holding the SIR; for address
	// "mapsrv", the only domain].
	Domain string `json:"domain,omitempty"`
	// Tenant of the tasks ["default"].
	Tenant string `json:"tenant,omitempty"`
	// TaskName says how a container's task is named: "pod" (default):
	// <K8S_POD_NAMESPACE>_<K8S_POD_NAME> from CNI_ARGS when both are
	// given, else the container ID; "container-id": always the container
	// ID. A pod re-created under the same name keeps its task, and so its
	// address.
	TaskName string `json:"task_name,omitempty"`
	// Address is where the SIR address comes from: "mapsrv" (allocated by
	// the mapping service for the task's name, kept across re-creations),
	// "ipam" (the IPAM plugin of the "ipam" section, e.g. host-local or
	// static), "prev" (the first IPv6 address of prevResult: ila-cni
	// chained after a plugin that assigned it). Default: "prev" with a
	// prevResult, "ipam" with an ipam section, else "mapsrv".
	Address string `json:"address,omitempty"`
	// Mapsrv is the mapping service's management API (address "mapsrv").
	Mapsrv MapsrvConf `json:"mapsrv,omitzero"`
	// ReleaseOnDel releases the mapsrv allocation on DEL. Off by default:
	// a pod deleted here and created on another node keeps its address.
	ReleaseOnDel bool `json:"release_on_del,omitempty"`
	// MTU of the veth pair [kernel default].
	MTU int `json:"mtu,omitempty"`
	// DataDir keeps one small file per attachment (what DEL and GC undo)
	// [/var/lib/cni/ila-cni].
	DataDir string `json:"data_dir,omitempty"`
	// IPv4 makes the network's tasks IPv4 tenant tasks (l2compat: a VXLAN
	// per VNI, ARP answered from the mapping): each gets an address of the
	// subnet besides its SIR address, which is the VN-IPv4 identifier of
	// the two. Needs address "mapsrv" (mapsrv allocates the IPv4 address).
	IPv4 *IPv4Conf `json:"ipv4,omitempty"`
	// Args is CNI's "args" convention: args.cni holds per-attachment
	// options, which Multus fills from a pod's network annotation
	// ("cni-args"). CNI_ARGS can give the same (ILA_TASK, ILA_PREPARE).
	Args *struct {
		CNI AttachArgs `json:"cni"`
	} `json:"args,omitempty"`
}

// IPv4Conf is the IPv4 side of an IPv4 tenant's network.
type IPv4Conf struct {
	// VNI of the tenant's virtual network (1 to 2^28-1).
	VNI uint32 `json:"vni"`
	// Subnet the addresses are allocated from (/8 to /30).
	Subnet netip.Prefix `json:"subnet"`
	// Gateway is a router of the subnet (optional; never allocated): the
	// result names it and routes Routes via it.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// Routes via Gateway [0.0.0.0/0 when Gateway is set].
	Routes []netip.Prefix `json:"routes,omitempty"`
}

// AttachArgs are per-attachment options.
type AttachArgs struct {
	// Task names the task instead of task_name's rule: the VM a KubeVirt
	// migration target pod carries is the task of its source pod, whose
	// pod name differs.
	Task string `json:"ila_task,omitempty"`
	// Prepare makes the ADD a prepare (the target pod of a live
	// migration): port, local delivery and address ready, no
	// registration; the task commits, moving its mapping here, on its
	// first frame on the port (the guest's RARP or gratuitous ARP after
	// the switchover) or by `ilactl commit`; a DEL before the commit (a
	// failed migration) aborts it without touching the mapping. The
	// commit is accepted only while the orchestrator's expectation names
	// this node (mapsrv POST /v1/tasks/{tenant}/{name}/expect, `ilactl
	// expect`, before the ADD; docs/registration.md 7.4).
	Prepare bool `json:"ila_prepare,omitempty"`
}

// MapsrvConf is how to reach mapsrv's management API.
type MapsrvConf struct {
	// URL of the API: http://[fd00::2]:8080.
	URL string `json:"url"`
	// TokenFile holds the API's bearer token (mapsrv --api-token-file).
	TokenFile string `json:"token_file,omitempty"`
	// CAFile is the CA certificate (PEM) that signed the API's TLS
	// certificate (mapsrv --api-cert), for an https URL; empty trusts the
	// system's roots.
	CAFile string `json:"ca_file,omitempty"`
}

// Address sources.
const (
	addrMapsrv = "mapsrv"
	addrIPAM   = "ipam"
	addrPrev   = "prev"
)

// defaultDataDir is where attachments are recorded by default.
const defaultDataDir = "/var/lib/cni/ila-cni"

// maxConf bounds the configuration read from stdin.
const maxConf = 1 << 20

// parseConf decodes and checks a network configuration. The errors are
// CNI errors (code 7, invalid network config; 6, decoding failure).
func parseConf(b []byte) (*NetConf, error) {
	if len(b) > maxConf {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "network config: larger than 1 MiB", "")
	}
	c := &NetConf{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "network config: "+err.Error(), "")
	}
	bad := func(format string, a ...any) error {
		return types.NewError(types.ErrInvalidNetworkConfig, "network config: "+fmt.Sprintf(format, a...), "")
	}
	if c.Name == "" || strings.ContainsAny(c.Name, "/\x00") || c.Name == "." || c.Name == ".." {
		return nil, bad("name %q: want a non-empty name without '/'", c.Name)
	}
	if c.Tenant == "" {
		c.Tenant = "default"
	}
	for what, v := range map[string]string{"tenant": c.Tenant, "domain": c.Domain, "node": c.Node} {
		if v != "" && !goodName(v) {
			return nil, bad("%s %q: want 1 to 253 bytes without '/', spaces or control characters", what, v)
		}
	}
	switch c.TaskName {
	case "":
		c.TaskName = "pod"
	case "pod", "container-id":
	default:
		return nil, bad("task_name %q: want \"pod\" or \"container-id\"", c.TaskName)
	}
	if c.Address == "" {
		switch {
		case c.RawPrevResult != nil:
			c.Address = addrPrev
		case c.IPAM.Type != "":
			c.Address = addrIPAM
		default:
			c.Address = addrMapsrv
		}
	}
	switch c.Address {
	case addrMapsrv:
		if c.Mapsrv.URL == "" {
			return nil, bad("address \"mapsrv\" needs mapsrv.url")
		}
		if !strings.HasPrefix(c.Mapsrv.URL, "http://") && !strings.HasPrefix(c.Mapsrv.URL, "https://") {
			return nil, bad("mapsrv.url %q: want http://HOST:PORT or https://HOST:PORT", c.Mapsrv.URL)
		}
	case addrIPAM:
		if c.IPAM.Type == "" || strings.ContainsAny(c.IPAM.Type, "/\x00") {
			return nil, bad("address \"ipam\" needs an ipam section with a plugin type (got %q)", c.IPAM.Type)
		}
	case addrPrev:
	default:
		return nil, bad("address %q: want \"mapsrv\", \"ipam\" or \"prev\"", c.Address)
	}
	if c.ReleaseOnDel && c.Address != addrMapsrv {
		return nil, bad("release_on_del applies to address \"mapsrv\" only")
	}
	if c.MTU < 0 || c.MTU > 65535 || c.MTU != 0 && c.MTU < 1280 {
		return nil, bad("mtu %d: want 1280 to 65535 (IPv6 minimum) or 0", c.MTU)
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if !filepath.IsAbs(c.DataDir) {
		return nil, bad("data_dir %q: want an absolute path", c.DataDir)
	}
	if c.NVENetns != "" && !filepath.IsAbs(c.NVENetns) {
		return nil, bad("nve_netns %q: want an absolute path (/var/run/netns/NAME)", c.NVENetns)
	}
	if v := c.IPv4; v != nil {
		switch {
		case c.Address != addrMapsrv:
			return nil, bad("ipv4 needs address \"mapsrv\" (mapsrv allocates the IPv4 address), not %q", c.Address)
		case v.VNI == 0 || v.VNI > ila.MaxVNID:
			return nil, bad("ipv4.vni %d: want 1 to %d", v.VNI, ila.MaxVNID)
		case !v.Subnet.Addr().Is4() || v.Subnet.Bits() < 8 || v.Subnet.Bits() > 30:
			return nil, bad("ipv4.subnet %v: want an IPv4 subnet from /8 to /30", v.Subnet)
		case v.Gateway.IsValid() && (!v.Gateway.Is4() || !v.Subnet.Contains(v.Gateway)):
			return nil, bad("ipv4.gateway %v: want an address of ipv4.subnet %v", v.Gateway, v.Subnet)
		case len(v.Routes) > 0 && !v.Gateway.IsValid():
			return nil, bad("ipv4.routes need ipv4.gateway")
		}
		v.Subnet = v.Subnet.Masked()
		for _, r := range v.Routes {
			if !r.Addr().Is4() {
				return nil, bad("ipv4.routes: %v is not an IPv4 prefix", r)
			}
		}
		if v.Gateway.IsValid() && len(v.Routes) == 0 {
			v.Routes = []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
		}
	}
	if c.Args != nil && c.Args.CNI.Task != "" && !goodName(c.Args.CNI.Task) {
		return nil, bad("args.cni.ila_task %q: want 1 to 253 bytes without '/', spaces or control characters", c.Args.CNI.Task)
	}
	return c, nil
}

// goodName: a name usable as a mapping key segment (mapsrv.CheckName).
func goodName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if r == '/' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// cniArgs parses CNI_ARGS ("K=V;K=V").
func cniArgs(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %q is not KEY=VALUE", kv), "")
		}
		m[k] = v
	}
	return m, nil
}

// attachArgs are the per-attachment options of a container: args.cni of
// the config, overridden by CNI_ARGS (ILA_TASK, ILA_PREPARE=true|false).
func (c *NetConf) attachArgs(args string) (AttachArgs, error) {
	var a AttachArgs
	if c.Args != nil {
		a = c.Args.CNI
	}
	m, err := cniArgs(args)
	if err != nil {
		return a, err
	}
	if v, ok := m["ILA_TASK"]; ok {
		a.Task = v
	}
	if v, ok := m["ILA_PREPARE"]; ok {
		switch v {
		case "true", "1":
			a.Prepare = true
		case "false", "0", "":
			a.Prepare = false
		default:
			return a, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: ILA_PREPARE=%q: want true or false", v), "")
		}
	}
	return a, nil
}

// taskName is the task name of a container under c.
func (c *NetConf) taskName(containerID, args string) (string, error) {
	m, err := cniArgs(args)
	if err != nil {
		return "", err
	}
	a, err := c.attachArgs(args)
	if err != nil {
		return "", err
	}
	name := containerID
	if ns, pod := m["K8S_POD_NAMESPACE"], m["K8S_POD_NAME"]; c.TaskName == "pod" && ns != "" && pod != "" {
		// Namespaces are DNS labels (no '_'): the split is unambiguous.
		name = ns + "_" + pod
	}
	if a.Task != "" {
		name = a.Task
	}
	if !goodName(name) {
		return "", types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("task name %q (from the container ID or K8S_POD_*): want 1 to 253 bytes without '/' or spaces", name), "")
	}
	return name, nil
}

// hostIfname is the NVE end of the container's veth: a function of the
// network, the container and its interface, so that DEL and GC find it
// without state. "ila" + 12 hex digits: 15 characters, the kernel's limit.
func hostIfname(network, containerID, ifname string) string {
	h := sha256.Sum256([]byte(network + "\x00" + containerID + "\x00" + ifname))
	return "ila" + hex.EncodeToString(h[:6])
}

// attachment is what ADD recorded for DEL, CHECK and GC: one JSON file
// <data_dir>/<network>/<host ifname>.
type attachment struct {
	ContainerID string     `json:"container_id"`
	IfName      string     `json:"ifname"`
	HostIf      string     `json:"host_ifname"`
	Task        string     `json:"task"`
	Tenant      string     `json:"tenant"`
	SIR         netip.Addr `json:"sir"`
	IPv4        netip.Addr `json:"ipv4,omitzero"`
	Address     string     `json:"address"`
	// Prepared: the ADD prepared the task (a migration target); DEL
	// aborts it if it is still prepared.
	Prepared bool `json:"prepared,omitempty"`
	// Allocated: this ADD made the mapsrv allocation.
	Allocated bool `json:"allocated,omitempty"`
}

// macOf converts a veth's hardware address.
func macOf(hw net.HardwareAddr) (ila.MAC, error) {
	return ila.ParseMAC(hw.String())
}
