//go:build linux

package lab

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

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
	streamDefault := cfg.StreamInterval == 0
	if streamDefault {
		cfg.StreamInterval = 2 * time.Millisecond
	}
	if cfg.Out == "" {
		cfg.Out = l.dir
	}
	switch cfg.Workload {
	case "":
	case WorkloadVM:
		if streamDefault {
			cfg.StreamInterval = 10 * time.Millisecond // the guest's echo is slow under TCG
		}
		return l.runVMDemo(ctx, cfg)
	default:
		return nil, fmt.Errorf("demo workload %q: want vm or none", cfg.Workload)
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
	at, note := firstLine(l.eventsPath(l.routerEvents()), mr.Start, sir, loc)
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
	return firstLineWith(path, since, func(line string) (time.Time, bool) {
		var v struct {
			Time time.Time `json:"time"`
		}
		return v.Time, json.Unmarshal([]byte(line), &v) == nil
	}, want...)
}

// firstLineWith is firstLine with the time of a line read by at.
func firstLineWith(path string, since time.Time, at func(string) (time.Time, bool), want ...string) (time.Time, string) {
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
		t, ok := at(line)
		if !ok || t.Before(since.Add(-time.Millisecond)) {
			continue
		}
		return t, ""
	}
	return time.Time{}, "no line naming " + strings.Join(want, " and ")
}
