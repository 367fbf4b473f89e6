//go:build linux

package lab

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// NodeUpdate is when a node applied a task's new mapping.
type NodeUpdate struct {
	Node        string    `json:"node"`
	Applied     time.Time `json:"applied,omitzero"`
	AfterCommit Duration  `json:"after_commit"`
	AfterStart  Duration  `json:"after_move_start"`
	Seen        bool      `json:"seen"`
	Source      string    `json:"source"`
	Note        string    `json:"note,omitempty"`
}

// Report is what `ilalab demo` writes to report.json.
type Report struct {
	Started     time.Time    `json:"started"`
	Lab         string       `json:"lab"`
	Mode        string       `json:"mode"`
	Move        *MoveResult  `json:"move"`
	Flows       []*FlowStats `json:"flows"`
	Convergence []NodeUpdate `json:"convergence"`
	// OldLocatorPackets counts packets seen arriving at the old NVE for the
	// old ILA address during the run; InFlightAfterCommit how many sources
	// still sent there after the commit.
	OldLocatorPackets   int       `json:"old_locator_packets"`
	InFlightAfterCommit int       `json:"sources_after_commit"`
	DNSBefore           DNSAnswer `json:"dns_before"`
	DNSAfter            DNSAnswer `json:"dns_after"`
	DNSChanged          bool      `json:"dns_changed"`
	Verdict             string    `json:"verdict"`
	Problems            []string  `json:"problems,omitempty"`
}

// DemoConfig configures RunDemo.
type DemoConfig struct {
	// Before and After are how long traffic runs before and after the move
	// [1.5s each].
	Before, After time.Duration
	// PingInterval [10ms], StreamInterval [2ms].
	PingInterval, StreamInterval time.Duration
	// Out is the directory for report.json and timeline.svg [state dir].
	Out string
	// Via is how the hot move carries the link: ViaAuto [default],
	// ViaCarry or ViaDual.
	Via string
}

// RunDemo runs the demo scenario on a lab that is up: a ping from the
// first task to the last and a TCP stream from the second to the last,
// a hot move of the last task to the second task's NVE in the middle, DNS
// before and after. It writes report.json and timeline.svg to cfg.Out.
func (l *Lab) RunDemo(ctx context.Context, cfg DemoConfig) (*Report, error) {
	if cfg.Before == 0 {
		cfg.Before = 1500 * time.Millisecond
	}
	if cfg.After == 0 {
		cfg.After = 1500 * time.Millisecond
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 10 * time.Millisecond
	}
	if cfg.StreamInterval == 0 {
		cfg.StreamInterval = 2 * time.Millisecond
	}
	if cfg.Out == "" {
		cfg.Out = l.dir
	}
	var v6 []*Task
	for i := range l.topo.Tasks {
		if !l.topo.Tasks[i].IPv4.IsValid() {
			v6 = append(v6, &l.topo.Tasks[i])
		}
	}
	if len(v6) < 3 || len(l.topo.NVEs) < 3 {
		return nil, fmt.Errorf("demo: needs 3 IPv6 tasks on 3 NVEs, lab has %d tasks, %d NVEs", len(v6), len(l.topo.NVEs))
	}
	pinger, streamer, dst := v6[0], v6[1], v6[len(v6)-1]
	to := streamer.NVE
	mode := "ila"
	if l.cfg.UnderlayOnly {
		mode = "plain-routes (no ILA components)"
	}
	rep := &Report{Started: time.Now(), Lab: l.cfg.Name, Mode: mode}

	l.progress("checking that %s and %s reach %s", pinger.Name, streamer.Name, dst.Name)
	for _, src := range []*Task{pinger, streamer} {
		if err := l.WaitReachable(ctx, src.Name, dst.SIR, 10*time.Second); err != nil {
			return nil, err
		}
	}
	if !l.cfg.UnderlayOnly {
		l.progress("asking DNS for %s", dst.IDName())
		rep.DNSBefore = l.Lookup(ctx, dst.IDName())
	}

	// Watch the old locator for packets still sent there, by source.
	var sniff *oldPathSniffer
	oldNVE, _ := l.topo.NVEByName(dst.NVE)
	if !l.cfg.UnderlayOnly {
		oldILA, err := ila.SIRToILA(dst.SIR, oldNVE.Locator, ila.CsumNeutralMap)
		if err != nil {
			return nil, err
		}
		if sniff, err = l.sniffOldPath(oldNVE, oldILA); err != nil {
			return nil, err
		}
	}
	srcNVE := map[netip.Addr]string{pinger.SIR: pinger.NVE, streamer.SIR: streamer.NVE}

	l.progress("traffic: ping %s -> %s every %v, TCP %s -> %s", pinger.Name, dst.Name, cfg.PingInterval, streamer.Name, dst.Name)
	tctx, cancel := context.WithTimeout(ctx, cfg.Before+cfg.After)
	defer cancel()
	if sniff != nil {
		go sniff.run(tctx)
	}
	type res struct {
		st  *FlowStats
		err error
	}
	pc, sc := make(chan res, 1), make(chan res, 1)
	go func() {
		s, err := l.Ping(tctx, pinger.Name, dst.SIR, cfg.PingInterval, 0, 500*time.Millisecond)
		pc <- res{s, err}
	}()
	go func() { s, err := l.Stream(tctx, streamer.Name, dst.Name, cfg.StreamInterval); sc <- res{s, err} }()
	select {
	case <-time.After(cfg.Before):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.progress("hot move of %s from %s to %s under traffic (link: %s)", dst.Name, dst.NVE, to, cmp.Or(cfg.Via, ViaAuto))
	mr, err := l.MoveVia(ctx, dst.Name, to, MoveHot, cfg.Via)
	rep.Move = mr
	if err != nil {
		cancel()
		<-pc
		<-sc
		return rep, fmt.Errorf("demo move: %w", err)
	}
	l.progress("traffic continues for %v after the move", cfg.After)
	p, s := <-pc, <-sc
	if p.err != nil {
		return rep, p.err
	}
	if s.err != nil {
		return rep, s.err
	}
	rep.Flows = []*FlowStats{p.st, s.st}
	if !l.cfg.UnderlayOnly {
		time.Sleep(1200 * time.Millisecond) // DNS TTL in the lab is 1s
		rep.DNSAfter = l.Lookup(ctx, dst.IDName())
		rep.DNSChanged = strings.Join(rep.DNSBefore.AAAA, ",") != strings.Join(rep.DNSAfter.AAAA, ",") && len(rep.DNSAfter.AAAA) > 0
	}
	rep.Convergence = l.convergence(dst, mr)
	if sniff != nil {
		last, count := sniff.result()
		for i := range rep.Convergence {
			c := &rep.Convergence[i]
			if c.Node == oldNVE.Name || c.Node == mr.To || c.Node == "router" {
				continue
			}
			for src, nve := range srcNVE {
				if nve != c.Node {
					continue
				}
				if t, ok := last[src]; ok {
					c.Seen, c.Applied, c.Source = true, t, fmt.Sprintf("last of %d packets from %s to the old locator, seen on %s up0", count[src], src, oldNVE.Name)
					c.AfterCommit, c.AfterStart = Duration(t.Sub(mr.Committed)), Duration(t.Sub(mr.Start))
					c.Note = ""
				}
			}
		}
		for src, n := range count {
			_ = src
			rep.OldLocatorPackets += n
		}
		for src, t := range last {
			if t.After(mr.Committed) {
				rep.InFlightAfterCommit++
				_ = src
			}
		}
	}
	rep.judge()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return rep, fmt.Errorf("demo output: %w", err)
	}
	if err := writeJSON(filepath.Join(cfg.Out, "report.json"), rep); err != nil {
		return rep, err
	}
	f, err := os.Create(filepath.Join(cfg.Out, "timeline.svg"))
	if err != nil {
		return rep, fmt.Errorf("timeline: %w", err)
	}
	defer f.Close()
	if err := rep.Timeline(f); err != nil {
		return rep, err
	}
	return rep, nil
}

func (r *Report) judge() {
	for _, f := range r.Flows {
		if f.Lost > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s lost %d of %d", f.Name, f.Lost, f.Sent))
		}
		if f.Error != "" {
			r.Problems = append(r.Problems, fmt.Sprintf("%s broke: %s", f.Name, f.Error))
		}
		if f.Reordered > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %d reordered", f.Name, f.Reordered))
		}
	}
	if r.Mode == "ila" && !r.DNSChanged {
		r.Problems = append(r.Problems, "DNS answer did not change")
	}
	for _, c := range r.Convergence {
		if !c.Seen && !strings.HasPrefix(c.Note, "no traffic") {
			r.Problems = append(r.Problems, fmt.Sprintf("no update seen from %s (%s)", c.Node, c.Note))
		}
	}
	if len(r.Problems) == 0 {
		r.Verdict = "PASS: the move lost nothing"
	} else {
		r.Verdict = "FAIL: " + strings.Join(r.Problems, "; ")
	}
}

// convergence finds, for the router and every NVE, when it applied the
// moved task's new mapping: from the router's events file and from the
// JSON logs of each ilad (the first line after the move start that names
// the task's SIR address and the new locator).
func (l *Lab) convergence(task *Task, mr *MoveResult) []NodeUpdate {
	to, _ := l.topo.NVEByName(mr.To)
	loc := to.Locator.String()
	sir := task.SIR.String()
	var out []NodeUpdate
	mk := func(node, source string, at time.Time, note string) NodeUpdate {
		u := NodeUpdate{Node: node, Source: source, Note: note}
		if !at.IsZero() {
			u.Seen, u.Applied = true, at
			u.AfterCommit = Duration(at.Sub(mr.Committed))
			u.AfterStart = Duration(at.Sub(mr.Start))
		}
		return u
	}
	if l.cfg.UnderlayOnly {
		return []NodeUpdate{mk("fabric", "plain route", mr.Committed, "")}
	}
	at, note := firstLine(l.eventsPath("router"), mr.Start, sir, loc)
	out = append(out, mk("router", "events-router.jsonl (mapping applied)", at, note))
	for _, n := range l.topo.NVEs {
		p := filepath.Join(l.dir, "logs", procIlad(n.Name)+".log")
		switch n.Name {
		case mr.From:
			at, note := firstLine(p, mr.Start, sir, loc, "moved away")
			out = append(out, mk(n.Name, "ilad log: in-flight redirect installed", at, note))
		case mr.To:
			at, note := firstLine(p, mr.Start, sir, "task attached")
			out = append(out, mk(n.Name, "ilad log: local delivery installed", at, note))
		default:
			out = append(out, mk(n.Name, "packets to the old locator", time.Time{}, "no traffic from this NVE to the moved task"))
		}
	}
	return out
}

// firstLine returns the time of the first JSON line of path at or after
// since whose text contains every one of want.
func firstLine(path string, since time.Time, want ...string) (time.Time, string) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if !ok {
			continue
		}
		var v struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &v) != nil || v.Time.Before(since.Add(-time.Millisecond)) {
			continue
		}
		return v.Time, ""
	}
	return time.Time{}, "no line naming " + strings.Join(want, " and ")
}

// Text writes the report in plain words.
func (r *Report) Text(w io.Writer) {
	fmt.Fprintf(w, "ILA lab demo (%s), %s\n\n", r.Mode, r.Started.UTC().Format(time.RFC3339))
	if m := r.Move; m != nil {
		fmt.Fprintf(w, "Move: %s from %s to %s (%s, link %s). After the start: mapping committed at %v, link carried over (or second link in use) at %v, task attached at the new NVE at %v.\n\n",
			m.Task, m.From, m.To, m.Mode, m.Via, m.Committed.Sub(m.Start).Round(10*time.Microsecond), m.LinkMoved.Sub(m.Start).Round(10*time.Microsecond), m.Attached.Sub(m.Start).Round(10*time.Microsecond))
	}
	for _, f := range r.Flows {
		fmt.Fprintf(w, "%s (every %v):\n", f.Name, time.Duration(f.Interval))
		fmt.Fprintf(w, "  sent %d, received %d, lost %d, duplicates %d, reordered %d\n", f.Sent, f.Received, f.Lost, f.Duplicates, f.Reordered)
		fmt.Fprintf(w, "  longest gap between arrivals %v\n", time.Duration(f.LongestGap).Round(10*time.Microsecond))
		if f.Error != "" {
			fmt.Fprintf(w, "  connection error: %s\n", f.Error)
		}
		if len(f.LostSeqs) > 0 {
			fmt.Fprintf(w, "  lost sequence numbers: %v\n", f.LostSeqs)
		}
	}
	if len(r.Convergence) > 0 {
		fmt.Fprintln(w, "\nConvergence (time the new mapping was applied, after the commit):")
		for _, c := range r.Convergence {
			if c.Seen {
				fmt.Fprintf(w, "  %-8s %9v  (%s)\n", c.Node, time.Duration(c.AfterCommit).Round(10*time.Microsecond), c.Source)
			} else {
				fmt.Fprintf(w, "  %-8s not seen (%s)\n", c.Node, c.Note)
			}
		}
	}
	if r.DNSBefore.Name != "" {
		fmt.Fprintf(w, "\nDNS %s AAAA (TXT):\n  before: %s (%s)\n  after:  %s (%s)\n", r.DNSBefore.Name,
			strings.Join(r.DNSBefore.AAAA, ","), strings.Join(r.DNSBefore.TXT, " "),
			strings.Join(r.DNSAfter.AAAA, ","), strings.Join(r.DNSAfter.TXT, " "))
		if r.DNSChanged {
			fmt.Fprintln(w, "  the answer followed the move")
		} else {
			fmt.Fprintln(w, "  the answer did NOT change")
		}
	}
	fmt.Fprintf(w, "\n%s\n", r.Verdict)
	if m := r.Move; m != nil && m.Via == ViaCarry && len(r.Problems) > 0 {
		fmt.Fprintln(w, "(carrying the veth end drops the task's carrier while the kernel moves the device, and the new NVE\n"+
			"must attach the port before anything reaches the task; `ilalab demo --via dual` moves make-before-break)")
	}
}
