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

// taskName is the task name of a container under c.
func (c *NetConf) taskName(containerID, args string) (string, error) {
	m, err := cniArgs(args)
	if err != nil {
		return "", err
	}
	name := containerID
	if ns, pod := m["K8S_POD_NAMESPACE"], m["K8S_POD_NAME"]; c.TaskName == "pod" && ns != "" && pod != "" {
		// Namespaces are DNS labels (no '_'): the split is unambiguous.
		name = ns + "_" + pod
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
	Address     string     `json:"address"`
	// Allocated: this ADD made the mapsrv allocation.
	Allocated bool `json:"allocated,omitempty"`
}

// macOf converts a veth's hardware address.
func macOf(hw net.HardwareAddr) (ila.MAC, error) {
	return ila.ParseMAC(hw.String())
}
