package lab

// Fabric kinds (Config.Fabric).
const (
	// FabricFRR: FRR (bgpd + zebra) in the fabric namespace learns every
	// NVE's locator from the NVE's ilad over BGP.
	FabricFRR = "frr"
	// FabricStatic: the lab writes a static route per locator.
	FabricStatic = "static"
)

// FabricT is how the fabric routes, in topology.json.
type FabricT struct {
	// Kind is frr or static.
	Kind string `json:"kind"`
	// DCs are the data centres, each with its fabric namespace.
	DCs []DC `json:"dcs"`
	// BGPRestartSeconds is the graceful restart time the NVEs offer the
	// fabric (frr only; 0: the lab's default, 120 s).
	BGPRestartSeconds int `json:"bgp_restart_seconds,omitempty"`
}

// DC is one data centre of the lab: its fabric namespace and, with FRR,
// its AS and how to reach its FRR (vtysh --vty_socket DIR).
type DC struct {
	Name        string `json:"name"`
	FabricNetns string `json:"fabric_netns"`
	ASN         uint32 `json:"asn,omitempty"`
	// FRRDir holds the FRR instance's configuration, pid files, vty and
	// zebra sockets: /run/frr/<fabric netns>, FRR's own place for an
	// instance started with -N <fabric netns>.
	FRRDir string `json:"frr_dir,omitempty"`
	// Vtysh is the command line that opens a vtysh on this fabric.
	Vtysh string `json:"vtysh,omitempty"`
	// RouterPID is the pid of the DC's ILA router (DC 1's is the
	// topology's router).
	RouterPID int `json:"router_pid,omitempty"`
}
