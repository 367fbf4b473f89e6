//go:build linux

package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DatapathCounters reads the datapath's packet counters
// (ila_datapath_packets_total) of every NVE's ilad and of the ILA
// router(s), from their metrics inside their namespaces: daemon name ->
// counter -> value, and what could not be read (a daemon down, say).
func (l *Lab) DatapathCounters(ctx context.Context) (map[string]map[string]uint64, []string) {
	out := map[string]map[string]uint64{}
	var unread []string
	read := func(name, ns, addr string) {
		c, err := l.scrapeCounters(ctx, ns, addr)
		if err != nil {
			unread = append(unread, fmt.Sprintf("%s: %v", name, err))
			return
		}
		out[name] = c
	}
	for _, n := range l.topo.NVEs {
		read(n.Name, n.Netns, nveMetrics)
	}
	if len(l.topo.Routers) == 0 {
		read(procRouter, l.topo.FabricNetns, routerMetrics)
	}
	for _, r := range l.topo.Routers {
		read(r.Name, r.Netns, r.Metrics)
	}
	return out, unread
}

// scrapeCounters fetches http://addr/metrics from inside namespace nsName
// and returns its ila_datapath_packets_total counters.
func (l *Lab) scrapeCounters(ctx context.Context, nsName, addr string) (map[string]uint64, error) {
	n, err := l.node(nsName)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	if err := n.ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	// One request on the connection dialled inside the namespace.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", addr, resp.Status)
	}
	c, err := parseDatapathCounters(resp.Body)
	if err == nil && len(c) == 0 {
		err = fmt.Errorf("%s/metrics: no ila_datapath_packets_total", addr)
	}
	return c, err
}

// parseDatapathCounters reads ila_datapath_packets_total{counter="x"} v
// lines of a Prometheus text exposition.
func parseDatapathCounters(r io.Reader) (map[string]uint64, error) {
	const prefix = `ila_datapath_packets_total{counter="`
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		name, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || f < 0 {
			continue
		}
		out[name] = uint64(f)
	}
	return out, sc.Err()
}

// dropDeltas lists, for every daemon in both snapshots, the drop_
// counters that grew from before to after ("nve2 drop_miss +1"), sorted.
func dropDeltas(before, after map[string]map[string]uint64) []string {
	var out []string
	for d, a := range after {
		b, ok := before[d]
		if !ok {
			continue
		}
		for k, v := range a {
			if strings.HasPrefix(k, "drop_") && v > b[k] {
				out = append(out, fmt.Sprintf("%s %s +%d", d, k, v-b[k]))
			}
		}
	}
	sort.Strings(out)
	return out
}
