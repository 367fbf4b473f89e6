//go:build linux

package lab

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/where"
)

// Consistency is whether every datapath (each NVE's and the ILA
// router's) holds what the store says, read back through the nodes' local
// APIs by locator/where (as `ilactl where --all` does), and whether every
// task reaches every other one.
type Consistency struct {
	Checked time.Time `json:"checked"`
	// Settled is how long it took to become consistent (or the time
	// given up after).
	Settled    Duration `json:"settled"`
	StoreTasks int      `json:"store_tasks"`
	// Where is the last consistency view.
	Where *where.Report `json:"where,omitempty"`
	// Unreachable lists "src -> dst" pairs of tasks without an answer.
	Unreachable []string `json:"unreachable,omitempty"`
	Problems    []string `json:"problems,omitempty"`
	// Initially are the problems of the first check, before the lab
	// settled (none: consistent at once).
	Initially []string `json:"initially,omitempty"`
	OK        bool     `json:"ok"`
}

// CheckConsistency checks until the lab is consistent or settle has
// passed, and returns the last check.
func (l *Lab) CheckConsistency(ctx context.Context, settle time.Duration) (*Consistency, error) {
	start := time.Now()
	var initially []string
	first := true
	for {
		c, err := l.consistency(ctx)
		if err != nil && time.Since(start) > settle {
			return nil, err
		}
		if err == nil {
			if first {
				initially, first = c.Problems, false
			}
			c.Initially = initially
			c.Settled = Duration(time.Since(start))
			if c.OK || time.Since(start) > settle || ctx.Err() != nil {
				return c, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// whereNodes are the nodes the consistency view asks: every NVE of the
// store and the ILA router, at their local API sockets.
func (l *Lab) whereNodes() where.Nodes {
	c, err := locator.NewClient(l.iladSock("router"))
	return where.NVEs(where.SocketPattern(l.iladSock("{nve}")), where.Node{Name: "router", Agent: c, Err: err})
}

func (l *Lab) consistency(ctx context.Context) (*Consistency, error) {
	api, err := l.api()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := where.Check(cctx, api, l.whereNodes(), where.Query{})
	if err != nil {
		return nil, fmt.Errorf("consistency: %w", err)
	}
	c := &Consistency{Checked: time.Now(), Where: rep}
	c.Problems = rep.Problems()
	if !rep.Settled() {
		c.Problems = append(c.Problems, "some datapaths have not applied the last changes yet")
	}
	for _, t := range rep.Tasks {
		if t.Missing {
			continue
		}
		c.StoreTasks++
		if t.State != ila.StateActive {
			c.Problems = append(c.Problems, fmt.Sprintf("task %s is %s in the store (on %s)", t.Name, t.State, t.NVE))
		}
	}
	// Every lab task is in the store.
	for _, t := range l.topo.Tasks {
		if !slices.ContainsFunc(rep.Tasks, func(r where.TaskReport) bool { return !r.Missing && r.Name == t.Name && r.Tenant == t.Tenant }) {
			c.Problems = append(c.Problems, fmt.Sprintf("task %s is not in the store", t.Name))
		}
	}
	if len(c.Problems) == 0 {
		c.Unreachable = l.unreachablePairs(ctx)
		for _, u := range c.Unreachable {
			c.Problems = append(c.Problems, "no answer "+u)
		}
	}
	c.OK = len(c.Problems) == 0
	return c, nil
}

// unreachablePairs pings every IPv6 container task from every other (3
// pings each, all in parallel) and lists the pairs without an answer.
func (l *Lab) unreachablePairs(ctx context.Context) []string {
	var ts []*Task
	for i := range l.topo.Tasks {
		t := &l.topo.Tasks[i]
		if t.VM == nil && !t.IPv4.IsValid() {
			ts = append(ts, t)
		}
	}
	// Opened here: the goroutines below only read the node map.
	for _, t := range ts {
		if _, err := l.node(t.Netns); err != nil {
			return []string{t.Name + ": " + err.Error()}
		}
	}
	type res struct {
		pair string
		ok   bool
	}
	ch := make(chan res)
	n := 0
	for _, a := range ts {
		for _, b := range ts {
			if a == b || a.Tenant != b.Tenant {
				continue
			}
			n++
			go func() {
				st, err := l.Ping(ctx, a.Name, b.SIR, 20*time.Millisecond, 3, 300*time.Millisecond)
				ch <- res{a.Name + " -> " + b.Name, err == nil && st.Received > 0}
			}()
		}
	}
	var out []string
	for range n {
		if r := <-ch; !r.ok {
			out = append(out, r.pair)
		}
	}
	slices.Sort(out)
	return out
}

// Text writes the check in plain words.
func (c *Consistency) Text() string {
	var b strings.Builder
	if c.OK {
		fmt.Fprintf(&b, "consistent after %v: every datapath holds what the store says of its %d tasks (ilactl where --all), every task answers every other\n", time.Duration(c.Settled).Round(time.Millisecond), c.StoreTasks)
		return b.String()
	}
	fmt.Fprintf(&b, "NOT consistent after %v:\n", time.Duration(c.Settled).Round(time.Millisecond))
	for _, p := range c.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}

// InitiallyText says what the first check found, if the lab was not
// consistent at once.
func (c *Consistency) InitiallyText() string {
	if len(c.Initially) == 0 {
		return ""
	}
	n := min(len(c.Initially), 5)
	s := "at first: " + strings.Join(c.Initially[:n], "; ")
	if n < len(c.Initially) {
		s += fmt.Sprintf(" (and %d more)", len(c.Initially)-n)
	}
	return s
}
