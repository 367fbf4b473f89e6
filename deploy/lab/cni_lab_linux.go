//go:build linux

package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// CNI in the lab: one network config directory per NVE, so that
//
//	NETCONFPATH=<nves[].cni_netconf_dir> CNI_PATH=<cni_bin_dir> \
//	  cnitool add <cni_network> /var/run/netns/<ns>
//
// puts a namespace of the user's on that NVE with a SIR address from
// mapsrv.

// CNINetwork is the name of the lab's CNI network.
const CNINetwork = "ila"

// BinILACNI is the CNI plugin's binary (optional: without it the lab runs,
// the configs point at a CNI_PATH the user fills).
const BinILACNI = "ila-cni"

// CNIConfFile is the name of the config file in each NVE's directory.
const CNIConfFile = "10-ila.conflist"

// CNINetworkIPv4 is the lab's CNI network of the IPv4 tenant (with
// --ipv4-tenant): tasks get an address of IPv4Net in VNI IPv4VNI besides
// their SIR address. Its config is CNIConfFileIPv4 in the same directory.
const (
	CNINetworkIPv4  = "ila-v4"
	CNIConfFileIPv4 = "20-ila-v4.conflist"
)

// cniConfList is the network config list of NVE n; ipv4: the IPv4
// tenant's.
func (l *Lab) cniConfList(n *NVE, ipv4 bool) map[string]any {
	t := l.topo
	plugin := map[string]any{
		"type":        BinILACNI,
		"ilad_socket": l.iladSock(n.Name),
		"nve_netns":   filepath.Join("/var/run/netns", n.Netns),
		"domain":      Domain,
		"tenant":      IPv6Tenant,
		"address":     "mapsrv",
		"mapsrv":      map[string]string{"url": t.Mapsrv.API, "token_file": t.Mapsrv.TokenFile, "ca_file": t.Mapsrv.CAFile},
		// One host, several NVEs: each keeps its own records.
		"data_dir": filepath.Join(l.dir, "cni-data", n.Name),
	}
	name := CNINetwork
	if ipv4 {
		name = CNINetworkIPv4
		plugin["tenant"] = IPv4Tenant
		// The lab's IPv4 subnet has no router: on-link only.
		plugin["ipv4"] = map[string]any{"vni": IPv4VNI, "subnet": IPv4Net.String()}
	}
	return map[string]any{"cniVersion": "1.1.0", "name": name, "plugins": []map[string]any{plugin}}
}

// writeCNI writes every NVE's CNI config and names it in the topology.
func (l *Lab) writeCNI() error {
	t := l.topo
	t.CNINetwork = CNINetwork
	if l.cfg.IPv4Tenant {
		t.CNINetworkIPv4 = CNINetworkIPv4
	}
	if p, err := findBin(l.cfg.BinDir, BinILACNI); err == nil {
		t.CNIBinDir = filepath.Dir(p)
	}
	for i := range t.NVEs {
		n := &t.NVEs[i]
		dir := filepath.Join(l.dir, "cni", n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cni config dir: %w", err)
		}
		files := map[string]bool{CNIConfFile: false}
		if l.cfg.IPv4Tenant {
			files[CNIConfFileIPv4] = true
		}
		for file, ipv4 := range files {
			b, err := json.MarshalIndent(l.cniConfList(n, ipv4), "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, file), append(b, '\n'), 0o644); err != nil {
				return fmt.Errorf("cni config: %w", err)
			}
		}
		n.CNINetconfDir = dir
	}
	return nil
}
