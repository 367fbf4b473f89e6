//go:build linux

package test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
	"github.com/ilamesh/ilamesh/ila"
)

// TestColdMoveSuspended holds a cold move between mapsrv's suspension of
// the task and its registration at the destination: meanwhile a ping to
// the task gets ICMPv6 "destination unreachable" and DNS publishes no
// locator for it (no AAAA at <identifier>.id, no locator in its TXT); once
// it registers at the destination, DNS publishes the new locator and the
// ping is answered.
func TestColdMoveSuspended(t *testing.T) {
	l := upLab(t, lab.Config{})
	t3 := task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)
	to, err := l.Topology().NVEByName("nve1")
	if err != nil {
		t.Fatal(err)
	}
	if t3.NVE == to.Name {
		t.Fatalf("t3 already on %s", to.Name)
	}
	if got := dig(t, l, t3.IDName(), "AAAA"); len(got) != 1 {
		t.Fatalf("before the move: dig %s AAAA = %v, want the ILA address", t3.IDName(), got)
	}

	held := func() error {
		m, err := l.Mapped(t.Context(), "t3")
		if err != nil {
			return err
		}
		if m.State != "suspended" {
			return fmt.Errorf("t3 after the cold move's commit: state %s, want suspended", m.State)
		}
		// The NVEs and the DNS bridge follow the watch within
		// milliseconds; give them up to 3 s.
		var out string
		deadline := time.Now().Add(3 * time.Second)
		for {
			out = pingOut(t, l, "t1", t3.SIR)
			if strings.Contains(out, "Destination unreachable") || time.Now().After(deadline) {
				break
			}
		}
		if !strings.Contains(out, "Destination unreachable") {
			t.Errorf("ping t1 -> suspended t3: want ICMPv6 destination unreachable, got:\n%s", out)
		} else {
			t.Logf("ping t1 -> suspended t3:\n%s", out)
		}
		var aaaa, txt []string
		for {
			aaaa, txt = dig(t, l, t3.IDName(), "AAAA"), dig(t, l, t3.IDName(), "TXT")
			if (len(aaaa) == 0 && !strings.Contains(strings.Join(txt, " "), "locator=")) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(aaaa) != 0 {
			t.Errorf("suspended: dig %s AAAA = %v, want no locator published", t3.IDName(), aaaa)
		}
		if s := strings.Join(txt, " "); strings.Contains(s, "locator=") || !strings.Contains(s, "state=suspended") {
			t.Errorf("suspended: dig %s TXT = %v, want state=suspended and no locator", t3.IDName(), txt)
		}
		return nil
	}
	r, err := l.MoveHeld(t.Context(), "t3", to.Name, lab.MoveCold, held)
	if err != nil {
		t.Fatalf("cold move: %v", err)
	}
	t.Logf("cold move: committed %v, link %v, attached %v after the start", r.Committed.Sub(r.Start), r.LinkMoved.Sub(r.Start), r.Attached.Sub(r.Start))

	// Registered at the destination: the new locator is published.
	deadline := time.Now().Add(5 * time.Second)
	var got []string
	for {
		got = dig(t, l, t3.IDName(), "AAAA")
		if (len(got) == 1 && onLocator(got[0], to.Locator)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != 1 || !onLocator(got[0], to.Locator) {
		t.Errorf("after the move: dig %s AAAA = %v, want an ILA address on %s's locator %s", t3.IDName(), got, to.Name, to.Locator)
	}
	reach(t, l, "t1", t3.SIR)
	pingAll(t, l, "t1", t3.SIR, 20)
}

// pingOut runs the system ping in task src's namespace (3 probes) and
// returns its output; a failing ping is the point, not an error.
func pingOut(t *testing.T, l *lab.Lab, src string, dst netip.Addr) string {
	t.Helper()
	tk := task(t, l, src)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", tk.Netns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", dst.String()).CombinedOutput()
	return string(out)
}

// dig asks the lab's DNS server for name's records of type qtype with the
// system dig, from the server's namespace, and returns the answers.
func dig(t *testing.T, l *lab.Lab, name, qtype string) []string {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (apt-get install bind9-dnsutils)")
	}
	d := l.Topology().DNS
	ap, err := netip.ParseAddrPort(d.Addr)
	if err != nil {
		t.Fatalf("dns server address %q: %v", d.Addr, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", d.Netns, "dig", "@"+ap.Addr().String(), "-p", fmt.Sprint(ap.Port()),
		name, qtype, "+short", "+time=1", "+tries=2").CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
	}
	var ans []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" {
			ans = append(ans, line)
		}
	}
	return ans
}

// onLocator reports whether the address text a is an ILA address on loc.
func onLocator(a string, loc ila.Locator) bool {
	addr, err := netip.ParseAddr(a)
	return err == nil && uint64(ila.SIRPrefixOf(addr)) == uint64(loc)
}
