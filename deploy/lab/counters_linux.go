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
// counter -> value. A daemon that does not answer is left out.
func (l *Lab) DatapathCounters(ctx context.Context) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for _, n := range l.topo.NVEs {
		if c, err := l.scrapeCounters(ctx, n.Netns, nveMetrics); err == nil {
			out[n.Name] = c
		}
	}
	if len(l.topo.Routers) == 0 {
		if c, err := l.scrapeCounters(ctx, l.topo.FabricNetns, routerMetrics); err == nil {
			out[procRouter] = c
		}
	}
	for _, r := range l.topo.Routers {
		if c, err := l.scrapeCounters(ctx, r.Netns, r.Metrics); err == nil {
			out[r.Name] = c
		}
	}
	return out
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
	used := false
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		if used {
			return nil, fmt.Errorf("one connection only")
		}
		used = true
		return conn, nil
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", addr, resp.Status)
	}
	return parseDatapathCounters(resp.Body)
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
