package lab

import "net/netip"

// RouterNS is an ILA router in a namespace of its own.
type RouterNS struct {
	Name  string `json:"name"` // router1, ...
	Netns string `json:"netns"`
	// FabricIf is its link's name in the fabric namespace (the router's
	// end is fab0); Addr its address there (BGP session and next hop of
	// the SIR prefix), FabricSide the fabric's.
	FabricIf   string     `json:"fabric_ifname"`
	Addr       netip.Addr `json:"addr"`
	FabricSide netip.Addr `json:"fabric_side"`
	PinPath    string     `json:"pin_path"`
	Metrics    string     `json:"metrics"`
	PID        int        `json:"pid,omitempty"`
	// Failed: `ilalab fail` killed it and cut its link.
	Failed bool `json:"failed,omitempty"`
}
