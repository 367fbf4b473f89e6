//go:build linux

package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// regLossTable is the nftables table of the registration-loss fault.
const regLossTable = "ilalab_chaos"

// regLoss drops pct percent of the registration protocol's packets in
// the control namespace while hold runs: UDP to mapsrv's registration port on the
// way in, from it and to the NVEs' notification port on the way out. The
// kernel here has no sch_netem (`tc qdisc add ... netem` answers "unknown
// qdisc"), so nftables' random number generator does the dropping.
func (l *Lab) regLoss(ctx context.Context, pct int, hold func()) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("registration loss needs nft (apt install nftables): %w", err)
	}
	// Every replica's registration port (RegPort+i-1).
	port := fmt.Sprint(RegPort)
	if n := len(l.topo.Mapsrv.Replicas); n > 1 {
		port = fmt.Sprintf("%d-%d", RegPort, RegPort+n-1)
	}
	rules := fmt.Sprintf(`table inet %[1]s {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %[2]s numgen random mod 100 < %[3]d counter drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		udp sport %[2]s numgen random mod 100 < %[3]d counter drop
		udp dport %[4]d numgen random mod 100 < %[3]d counter drop
	}
}
`, regLossTable, port, pct, notifyPort)
	l.progress("dropping %d%% of the registration protocol's packets in %s", pct, l.topo.Mapsrv.Netns)
	return l.nftFor(ctx, "registration loss", rules, hold)
}

// cutReplica cuts mapsrv replica i (1-based) off from the NVEs while hold
// runs: in the control namespace, UDP to its registration port is
// dropped on the way in and from it on the way out (heartbeats,
// registrations, their answers), and so are move notifications to the
// NVEs (sent from sockets of their own, which one namespace cannot tell
// apart by replica: the other replica's are dropped too, and moves reach
// the NVEs through their watch). The replica stays up, on etcd, and its
// TCP probes of the NVEs' hosts get through.
func (l *Lab) cutReplica(ctx context.Context, i int, hold func()) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("cutting a replica off needs nft (apt install nftables): %w", err)
	}
	port := RegPort + i - 1
	rules := fmt.Sprintf(`table inet %[1]s {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %[2]d counter drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		udp sport %[2]d counter drop
		udp dport %[3]d counter drop
	}
}
`, regLossTable, port, notifyPort)
	l.progress("cutting mapsrv replica %d (registration port %d) off from the NVEs in %s", i, port, l.topo.Mapsrv.Netns)
	return l.nftFor(ctx, "cut replica", rules, hold)
}

// nftFor loads rules (one table, regLossTable) in the control namespace,
// calls hold, reports the rules' counters and removes the table.
func (l *Lab) nftFor(ctx context.Context, what, rules string, hold func()) error {
	f, err := os.CreateTemp(l.dir, "chaos-*.nft")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(rules); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", what, err)
	}
	f.Close()
	ns := l.topo.Mapsrv.Netns
	if out, err := l.inNS(ctx, ns, "nft", "-f", f.Name()); err != nil {
		return fmt.Errorf("%s: %w: %s", what, err, strings.TrimSpace(string(out)))
	}
	hold()
	out, _ := l.inNS(context.WithoutCancel(ctx), ns, "nft", "list", "table", "inet", regLossTable)
	l.progress("%s rules at the end:\n%s", what, strings.TrimSpace(string(out)))
	if _, err := l.inNS(context.WithoutCancel(ctx), ns, "nft", "delete", "table", "inet", regLossTable); err != nil {
		return fmt.Errorf("%s: remove the rules: %w", what, err)
	}
	return nil
}
