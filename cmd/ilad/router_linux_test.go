//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// routerMetricsAddr is where the router's metrics listen, in the fabric.
const routerMetricsAddr = "[::1]:9464"

// router is an `ilad -role router` in the lab's fabric namespace.
type router struct {
	args   []string
	events string
	cancel context.CancelFunc
	done   chan error
}

// startRouter runs ilad in the router role on the fabric's NVE-facing
// ports, as a user would, and waits until its table holds want mappings.
func (l *lab) startRouter(want int) *router {
	t := l.t
	r := &router{events: filepath.Join(l.dir, "router-events.jsonl")}
	var ports []string
	for _, n := range l.nves {
		ports = append(ports, fmt.Sprintf("f%d", n.idx))
	}
	r.args = []string{
		"-role", "router", "-node", "router", "-ports", strings.Join(ports, ","), "-netns", l.fab.Path,
		"-etcd", strings.Join(l.etcd, ","), "-bpffs", filepath.Join(l.bpffs, "router"),
		"-metrics", routerMetricsAddr, "-events", r.events, "-log-level", "debug",
		"-api", filepath.Join(l.dir, "router.sock"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- run(ctx, r.args, l.log) }()
	t.Cleanup(func() { r.stop(t) })
	l.waitRouterMetric(r, "ila_agent_watch_synced", 1)
	l.waitRouterMetric(r, "ila_agent_mappings", float64(want))
	return r
}

// stop stops the router and wants a clean exit.
func (r *router) stop(t testing.TB) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("router: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("router: still running 10s after the cancel")
	}
	r.cancel = nil
}

// routerMetrics returns the router's Prometheus page.
func (l *lab) routerMetrics() string {
	out, _ := exec.Command("ip", "netns", "exec", l.fab.Name, "curl", "-s", "http://"+routerMetricsAddr+"/metrics").CombinedOutput()
	return string(out)
}

// metricValue reads one sample (name with its labels, as on the page).
func metricValue(page, sample string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func (l *lab) waitRouterMetric(r *router, sample string, want float64) {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := metricValue(l.routerMetrics(), sample)
		if ok && v == want {
			return
		}
		select {
		case err := <-r.done:
			r.done <- err
			l.t.Fatalf("router exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("router %s = %v (present %v), want %v\n%s", sample, v, ok, want, l.routerMetrics())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationRouterRole runs `ilad -role router` in the fabric: nve1
// is in pull mode and passes what it has no mapping for towards the
// router, which translates it with its whole table (fed by the watch) and
// answers an unknown identifier with ICMPv6 address unreachable. Its
// metrics, its events file and its shutdown (datapath left pinned,
// forwarding on) are checked too.
func TestIntegrationRouterRole(t *testing.T) {
	l := newLab(t, 2, map[int][]string{1: {"-mode", "pull"}})
	n1, n2 := l.nves[0], l.nves[1]
	// Without the router, the fabric has no route for the SIR prefix.
	a := l.addTask(n1, "a", 0x1001)
	b := l.addTask(n2, "b", 0x1002)
	for _, tk := range []*labTask{a, b} {
		l.waitMapping(tk, tk.nve)
	}
	r := l.startRouter(2)

	t.Run("miss at a pull NVE goes through the router", func(t *testing.T) {
		if err := ping(t, a, b.sir, 3); err != nil {
			t.Fatal(err)
		}
		page := l.routerMetrics()
		if v, _ := metricValue(page, `ila_datapath_packets_total{counter="router_translated"}`); v < 1 {
			t.Errorf("router translated %v packets, want at least the first ping (nve1 had no mapping for b)\n%s", v, page)
		}
	})

	t.Run("unknown identifier: ICMPv6 address unreachable", func(t *testing.T) {
		ghost := labSIR.Addr(0x1999)
		var c *net.UDPConn
		if err := a.ns.Do(func() error {
			var err error
			c, err = net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.sir, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(ghost, 9)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Address unreachable is a soft error for UDP: reported with
		// IPV6_RECVERR only.
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1) }); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		if _, err := c.Write([]byte("nobody")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 64)); !errors.Is(err, unix.EHOSTUNREACH) {
			t.Errorf("read after sending to an unknown identifier: %v, want EHOSTUNREACH (ICMPv6 address unreachable)\n%s", err, l.routerMetrics())
		}
		page := l.routerMetrics()
		for _, s := range []string{`ila_datapath_packets_total{counter="router_icmp_sent"}`, `ila_datapath_packets_total{counter="drop_router_miss"}`} {
			if v, _ := metricValue(page, s); v < 1 {
				t.Errorf("%s = %v, want at least 1", s, v)
			}
		}
	})

	var c3 *labTask
	t.Run("table follows the watch; events file", func(t *testing.T) {
		c := l.addTask(n2, "c", 0x1003)
		c3 = c
		l.waitMapping(c, n2)
		l.waitRouterMetric(r, "ila_agent_mappings", 3)
		page := l.routerMetrics()
		if v, _ := metricValue(page, "ila_agent_watch_revision"); v <= 0 {
			t.Errorf("watch revision %v, want > 0", v)
		}
		ev, err := os.ReadFile(r.events)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`"task":"c","sir":"` + regexp.QuoteMeta(c.sir.String()) + `","locator":"` + regexp.QuoteMeta(n2.loc.String()) + `"`).Match(ev) {
			t.Errorf("events file lacks c at %s:\n%s", n2.loc, ev)
		}
	})

	t.Run("stopped router leaves its datapath forwarding", func(t *testing.T) {
		if c3 == nil {
			t.Skip("no task c")
		}
		before, _ := metricValue(l.routerMetrics(), `ila_datapath_packets_total{counter="router_translated"}`)
		r.stop(t)
		// nve1 (pull) has never sent to c: its first packets take the
		// pinned router programs.
		if err := ping(t, a, c3.sir, 3); err != nil {
			t.Fatal(err)
		}
		r2 := l.startRouter(3) // adopts the pinned table and counters
		after, _ := metricValue(l.routerMetrics(), `ila_datapath_packets_total{counter="router_translated"}`)
		if after <= before {
			t.Errorf("router translated %v before the stop, %v after: the pinned datapath did not forward while ilad was down", before, after)
		}
		r2.stop(t)
	})
}
