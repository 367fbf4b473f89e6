package lab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
)

// Plan constants.
var (
	SIRPrefix   = netip.MustParsePrefix("fd00:5151::/64")
	ControlAddr = netip.MustParseAddr("fd00:ff:c0::2")
	fabricCtl   = netip.MustParseAddr("fd00:ff:c0::1")
	ctlNet      = netip.MustParsePrefix("fd00:ff:c0::/64")
	// IPv4Net is the IPv4 tenant's subnet.
	IPv4Net = netip.MustParsePrefix("10.100.0.0/24")
)

// Plan names and ports.
const (
	Domain      = "default"
	Zone        = "ila.lab."
	IPv4Tenant  = "v4"
	IPv6Tenant  = "default"
	IPv4VNI     = 100
	APIPort     = 8080
	RegPort     = 4790
	DNSPort     = 53
	DefaultDir  = "/run/ilalab"
	DefaultName = "ilalab"
)

// LocatorOf returns NVE n's locator (n >= 1).
func LocatorOf(n int) ila.Locator { return ila.Locator(0xfd00_001c_0000_0000 | uint64(n)) }

// underlayNet returns the /64 of the link between the fabric and NVE n.
func underlayNet(n int) netip.Prefix {
	return netip.PrefixFrom(ila.Locator(0xfd00_00ff_0000_0000|uint64(n)).Addr(0), 64)
}

// UnderlayOf returns NVE n's underlay address (its end of the fabric link).
func UnderlayOf(n int) netip.Addr { return ila.Locator(0xfd00_00ff_0000_0000 | uint64(n)).Addr(2) }

// fabricSide returns the fabric's address on the link to NVE n.
func fabricSide(n int) netip.Addr { return ila.Locator(0xfd00_00ff_0000_0000 | uint64(n)).Addr(1) }

// IdentifierOf returns task n's identifier (a LUID).
func IdentifierOf(n int) ila.Identifier {
	id, err := ila.NewLUID(uint64(n))
	if err != nil {
		panic(fmt.Sprintf("lab: identifier %d: %v", n, err)) // n is small and positive
	}
	return id
}

// SIROf returns task n's SIR address.
func SIROf(n int) netip.Addr {
	p, _ := ila.SIRPrefixFrom(SIRPrefix)
	return p.Addr(IdentifierOf(n))
}

// SIRv4Of returns the SIR address of IPv4 tenant task n (VN-IPv4 identifier).
func SIRv4Of(n int) netip.Addr {
	id, err := ila.NewVNIPv4(IPv4VNI, IPv4Of(n))
	if err != nil {
		panic(fmt.Sprintf("lab: identifier of %v: %v", IPv4Of(n), err))
	}
	p, _ := ila.SIRPrefixFrom(SIRPrefix)
	return p.Addr(id)
}

// taskMAC returns task n's MAC address (locally administered).
func taskMAC(n int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x7a, 0, 0, byte(n >> 8), byte(n)}
}

// IPv4Of returns IPv4 tenant task n's address.
func IPv4Of(n int) netip.Addr {
	b := IPv4Net.Addr().As4()
	b[3] = byte(n)
	return netip.AddrFrom4(b)
}

// Topology is what `ilalab up` prints and writes to <state-dir>/topology.json.
type Topology struct {
	Name        string    `json:"name"`
	StateDir    string    `json:"state_dir"`
	FabricNetns string    `json:"fabric_netns"`
	Domain      DomainT   `json:"domain"`
	NVEs        []NVE     `json:"nves"`
	Tasks       []Task    `json:"tasks"`
	Mapsrv      Mapsrv    `json:"mapsrv"`
	Etcd        Etcd      `json:"etcd"`
	DNS         DNS       `json:"dns"`
	Router      Router    `json:"router"`
	Timers      Timers    `json:"timers"`
	HostLink    *HostLink `json:"host_link,omitempty"`
	Components  []string  `json:"components"`
	// CNINetwork and CNIBinDir: cnitool's network name and CNI_PATH (cni_lab.go).
	CNINetwork string `json:"cni_network,omitempty"`
	// CNINetworkIPv4 is the IPv4 tenant's network (--ipv4-tenant).
	CNINetworkIPv4 string   `json:"cni_network_ipv4,omitempty"`
	CNIBinDir      string   `json:"cni_bin_dir,omitempty"`
	Missing        []string `json:"missing,omitempty"`
	// Fabric says how the fabric routes the locators (frr or static)
	// and lists the data centres.
	Fabric FabricT `json:"fabric"`
	// Routers are the ILA routers in namespaces of their own
	// (Config.Routers); Router then describes them in a word.
	Routers []RouterNS `json:"routers,omitempty"`
}

// DomainT describes the lab's ILA domain.
type DomainT struct {
	Name string       `json:"name"`
	SIR  netip.Prefix `json:"sir_prefix"`
	Csum string       `json:"csum"`
}

// NVE is one NVE (host) of the lab.
type NVE struct {
	Name     string      `json:"name"`
	Netns    string      `json:"netns"`
	Locator  ila.Locator `json:"locator"`
	Underlay netip.Addr  `json:"underlay"`
	Index    int         `json:"index"`
	PID      int         `json:"ilad_pid,omitempty"`
	// DC is the data centre the NVE is in (Topology.Fabric.DCs).
	DC string `json:"dc,omitempty"`
	// CNINetconfDir holds the CNI network config of this NVE (cni_lab.go).
	CNINetconfDir string `json:"cni_netconf_dir,omitempty"`
	// Failed: `ilalab fail` killed its daemons and cut its link.
	Failed bool `json:"failed,omitempty"`
}

// Task is one task (container, VM) of the lab.
type Task struct {
	Name       string         `json:"name"`
	Tenant     string         `json:"tenant"`
	Netns      string         `json:"netns"`
	NVE        string         `json:"nve"`
	SIR        netip.Addr     `json:"sir"`
	IPv4       netip.Addr     `json:"ipv4,omitzero"`
	Identifier ila.Identifier `json:"identifier"`
	Ifname     string         `json:"nve_ifname"`
	// TaskIfname is the task's own interface ("eth0"; a dual-homed move
	// switches between eth0 and eth1).
	TaskIfname string `json:"task_ifname,omitempty"`
	MAC        string `json:"mac"`
	Index      int    `json:"index"`
	// VM is set for a VM task (vmplan.go): a QEMU guest, no namespace.
	VM *TaskVM `json:"vm,omitempty"`
	// Standby is the NVE holding the task's hot standby (`ilalab
	// standby`), a replica namespace StandbyNetns with the same addresses.
	Standby      string `json:"standby,omitempty"`
	StandbyNetns string `json:"standby_netns,omitempty"`
}

// Timers are the liveness and lifetime settings of the lab's daemons.
type Timers struct {
	Heartbeat Duration `json:"heartbeat"`
	Lifetime  Duration `json:"lifetime,omitempty"`
	// FlapMoves is mapsrv's flap damping limit (--flap-moves; 0: its
	// default).
	FlapMoves int `json:"flap_moves,omitempty"`
}

// Mapsrv is where the mapping service listens.
type Mapsrv struct {
	Netns     string `json:"netns"`
	API       string `json:"api"`
	APISocket string `json:"api_socket,omitempty"`
	// TokenFile holds the API's bearer token (ilactl --token-file, or
	// ILACTL_TOKEN_FILE).
	TokenFile string `json:"token_file,omitempty"`
	// ReadOnlyTokenFile holds a read-only API token (ilactl --token-file
	// for an operator who only looks: it cannot move anything).
	ReadOnlyTokenFile string `json:"read_only_token_file,omitempty"`
	// CAFile is the CA certificate that signed the API's TLS certificate
	// (ilactl --ca-file, or ILACTL_CA_FILE); empty: plain HTTP.
	CAFile       string `json:"ca_file,omitempty"`
	Registration string `json:"registration"`
	PID          int    `json:"pid,omitempty"`
	// Replicas lists every replica when the lab runs more than one
	// (`ilalab up --mapsrv-replicas 2`); the first is the one API and
	// Registration above name.
	Replicas []MapsrvReplica `json:"replicas,omitempty"`
}

// MapsrvReplica is one replica of the mapping service.
type MapsrvReplica struct {
	// Name is its --replica-name (in the NVEs' liveness records).
	Name         string `json:"name"`
	API          string `json:"api"`
	Registration string `json:"registration"`
	// KeyFile holds its own signing key (a key id of its own, owned by
	// "mapsrv") and the NVEs' secrets.
	KeyFile string `json:"key_file"`
	PID     int    `json:"pid,omitempty"`
}

// Etcd is how to reach the embedded etcd.
type Etcd struct {
	Endpoints []string `json:"endpoints"`
	// Authentication is on (least-privilege roles, mapsrv rbac-init):
	// ReadOnlyUser and the password in ReadOnlyPasswordFile read /ila/
	// and cannot write it (etcdctl --user NAME --password "$(cat FILE)").
	ReadOnlyUser         string `json:"read_only_user,omitempty"`
	ReadOnlyPasswordFile string `json:"read_only_password_file,omitempty"`
	// Members is the number of members of the lab's own etcd cluster
	// (`ilalab up --etcd-members 3`, etcdcluster_linux.go); 0: mapsrv's
	// embedded etcd.
	Members int `json:"members,omitempty"`
}

// DNS is where the DNS bridge answers.
type DNS struct {
	Netns string `json:"netns"`
	Addr  string `json:"addr"`
	Zone  string `json:"zone"`
	PID   int    `json:"pid,omitempty"`
}

// HostLink is the host's veth into the control namespace.
type HostLink struct {
	Ifname string     `json:"ifname"`
	Addr   netip.Addr `json:"addr"`
	Routes []string   `json:"routes"`
}

// Router is the fabric's ILA router (full table): ilad -role router.
type Router struct {
	Netns   string `json:"netns"`
	PinPath string `json:"pin_path,omitempty"`
	Mode    string `json:"mode"`
	// Metrics is the router's Prometheus listener, inside Netns.
	Metrics string `json:"metrics,omitempty"`
	PID     int    `json:"pid,omitempty"`
	// Failed: `ilalab fail router` killed it and removed its programs.
	Failed bool `json:"failed,omitempty"`
}

// TaskByName returns the named task.
func (t *Topology) TaskByName(name string) (*Task, error) {
	for i := range t.Tasks {
		if t.Tasks[i].Name == name {
			return &t.Tasks[i], nil
		}
	}
	return nil, fmt.Errorf("task %s: not in the lab", name)
}

// NVEByName returns the named NVE.
func (t *Topology) NVEByName(name string) (*NVE, error) {
	for i := range t.NVEs {
		if t.NVEs[i].Name == name {
			return &t.NVEs[i], nil
		}
	}
	return nil, fmt.Errorf("nve %s: not in the lab", name)
}

// TenantName is the tenant of the lab's IPv6 task number task (from 1) when
// the IPv6 tasks are spread over n tenants: IPv6Tenant for n <= 1, else
// tenant1 .. tenant<n>, round robin (t1 in tenant1, t2 in tenant2, ...).
func TenantName(task, n int) string {
	if n <= 1 {
		return IPv6Tenant
	}
	return fmt.Sprintf("tenant%d", (task-1)%n+1)
}
