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
	f, err := os.CreateTemp(l.dir, "regloss-*.nft")
	if err != nil {
		return fmt.Errorf("registration loss: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(rules); err != nil {
		f.Close()
		return fmt.Errorf("registration loss: %w", err)
	}
	f.Close()
	ns := l.topo.Mapsrv.Netns
	l.progress("dropping %d%% of the registration protocol's packets in %s", pct, ns)
	if out, err := l.inNS(ctx, ns, "nft", "-f", f.Name()); err != nil {
		return fmt.Errorf("registration loss: %w: %s", err, strings.TrimSpace(string(out)))
	}
	hold()
	out, _ := l.inNS(context.WithoutCancel(ctx), ns, "nft", "list", "table", "inet", regLossTable)
	l.progress("registration loss rules at the end:\n%s", strings.TrimSpace(string(out)))
	if _, err := l.inNS(context.WithoutCancel(ctx), ns, "nft", "delete", "table", "inet", regLossTable); err != nil {
		return fmt.Errorf("registration loss: remove the rules: %w", err)
	}
	return nil
}
