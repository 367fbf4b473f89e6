//go:build linux

package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// runVMDemo is RunDemo's VM workload: a ping and a TCP echo stream from
// two container tasks on other NVEs to the first VM task, and a live
// migration of that VM (QEMU over QMP, prepared by the libvirt hook,
// committed by the guest's announce) to the stream source's NVE in the
// middle, DNS before and after.
func (l *Lab) runVMDemo(ctx context.Context, cfg DemoConfig) (*Report, error) {
	var dst *Task
	var others []*Task
	for i := range l.topo.Tasks {
		t := &l.topo.Tasks[i]
		switch {
		case t.VM != nil && dst == nil:
			dst = t
		case t.VM == nil && !t.IPv4.IsValid():
			others = append(others, t)
		}
	}
	if dst == nil {
		return nil, fmt.Errorf("demo --workload vm: the lab has no VM task (ilalab up --vm-tasks 1)")
	}
	var pinger, streamer *Task
	for _, t := range others {
		switch {
		case t.NVE == dst.NVE:
		case pinger == nil:
			pinger = t
		case streamer == nil && t.NVE != pinger.NVE:
			streamer = t
		}
	}
	if pinger == nil || streamer == nil {
		return nil, fmt.Errorf("demo --workload vm: needs container tasks on two NVEs besides %s's (%s)", dst.Name, dst.NVE)
	}
	from, err := l.topo.NVEByName(dst.NVE)
	if err != nil {
		return nil, err
	}
	to, err := l.topo.NVEByName(streamer.NVE)
	if err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Lab: l.cfg.Name, Mode: "ila", Workload: WorkloadVM}
	l.progress("checking that %s and %s reach VM %s", pinger.Name, streamer.Name, dst.Name)
	for _, src := range []*Task{pinger, streamer} {
		if err := l.WaitReachable(ctx, src.Name, dst.SIR, 10*time.Second); err != nil {
			return nil, err
		}
	}
	l.progress("asking DNS for %s", dst.IDName())
	rep.DNSBefore = l.Lookup(ctx, dst.IDName())

	l.progress("traffic: ping %s -> %s every %v, TCP echo %s -> %s every %v", pinger.Name, dst.Name, cfg.PingInterval, streamer.Name, dst.Name, cfg.StreamInterval)
	tctx, cancel := context.WithTimeout(ctx, cfg.Before+cfg.After)
	defer cancel()
	type res struct {
		st  *FlowStats
		err error
	}
	pc, sc := make(chan res, 1), make(chan res, 1)
	go func() {
		s, err := l.Ping(tctx, pinger.Name, dst.SIR, cfg.PingInterval, 0, 500*time.Millisecond)
		pc <- res{s, err}
	}()
	go func() { s, err := l.StreamEcho(tctx, streamer.Name, dst.SIR, cfg.StreamInterval); sc <- res{s, err} }()
	select {
	case <-time.After(cfg.Before):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.progress("live migration of VM %s from %s to %s under traffic", dst.Name, from.Name, to.Name)
	mr := &MoveResult{Task: dst.Name, From: from.Name, To: to.Name, Mode: "live", Via: "qemu", Start: time.Now()}
	rep.Move = mr
	vr, err := l.migrateVM(ctx, dst, from, to, mr)
	rep.VM = vr
	mr.Done = time.Now()
	if serr := l.save(); err == nil {
		err = serr
	}
	if err != nil {
		cancel()
		<-pc
		<-sc
		return rep, fmt.Errorf("demo migration: %w", err)
	}
	l.progress("traffic continues for %v after the migration", cfg.After)
	p, s := <-pc, <-sc
	if p.err != nil {
		return rep, p.err
	}
	if s.err != nil {
		return rep, s.err
	}
	rep.Flows = []*FlowStats{p.st, s.st}
	time.Sleep(1200 * time.Millisecond) // DNS TTL in the lab is 1s
	rep.DNSAfter = l.Lookup(ctx, dst.IDName())
	rep.DNSChanged = strings.Join(rep.DNSBefore.AAAA, ",") != strings.Join(rep.DNSAfter.AAAA, ",") && len(rep.DNSAfter.AAAA) > 0
	rep.Convergence = l.convergence(dst, mr)
	rep.judgeVM()
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
	return rep, rep.Timeline(f)
}

// classifyLoss sorts each flow's lost packets by when they were sent
// (the flow's own send times, else estimated from its start and
// interval): before the guest stopped at the source (QEMU's I/O, stalled
// by the last copy rounds on a busy host), in its pause, between its
// resume and the old NVE redirecting (ILA's commit path: announce, commit,
// registration, watch), and after that, which nothing explains.
func (r *Report) classifyLoss() {
	v := r.VM
	switched := v.Committed
	for _, c := range r.Convergence {
		if r.Move != nil && c.Node == r.Move.From && c.Seen {
			switched = c.Applied
		}
	}
	if !v.EarlyRedirect.IsZero() && v.EarlyRedirect.Before(switched) {
		switched = v.EarlyRedirect // the handover: redirected from the guest's stop
	}
	if switched.Before(v.GuestResumed) {
		switched = v.GuestResumed
	}
	v.OldNVERedirect, v.ResumeToRedirect = switched, Duration(switched.Sub(v.GuestResumed))
	v.Loss = nil
	for _, f := range r.Flows {
		l := VMFlowLoss{Flow: f.Name, Lost: f.Lost}
		// The flow's tail (packets after the last one that came back) is
		// excused once a packet sent after the switch came back: the path
		// worked, those answers only missed the flow's linger (a starved
		// guest or host).
		lastSeq, worksAfter := -1, false
		for _, a := range f.Arrivals {
			lastSeq = max(lastSeq, a.Seq)
			worksAfter = worksAfter || a.Sent.After(switched)
		}
		for _, seq := range f.LostSeqs {
			at, ok := f.sentAt[seq]
			if !ok {
				at = f.FirstSent.Add(time.Duration(seq) * time.Duration(f.Interval))
			}
			switch {
			case seq > lastSeq && worksAfter:
				l.AtEnd++
			case at.Before(v.GuestStopped):
				l.BeforeStop++
			case at.Before(v.GuestResumed):
				l.InPause++
			case !at.After(switched):
				l.ResumeToSwitch++
			default:
				l.AfterSwitch++
			}
		}
		v.Loss = append(v.Loss, l)
	}
}

// judgeVM: a migration may lose what QEMU loses (around and in the
// guest's pause) and what arrives at the old NVE between the guest's
// resume and its redirect; a packet lost after that, a broken TCP
// connection, DNS not following or a commit by anything but the guest's
// frame is a problem.
func (r *Report) judgeVM() {
	r.classifyLoss()
	v := r.VM
	for i, f := range r.Flows {
		if n := v.Loss[i].AfterSwitch; n > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s lost %d packets sent after the old NVE redirected (%d in all)", f.Name, n, f.Lost))
		}
		if f.Error != "" {
			r.Problems = append(r.Problems, fmt.Sprintf("%s broke: %s", f.Name, f.Error))
		}
	}
	if !r.DNSChanged {
		r.Problems = append(r.Problems, "DNS answer did not change")
	}
	if v.CommittedBy != "frame" {
		r.Problems = append(r.Problems, fmt.Sprintf("committed by %q, not by the guest's first frame", v.CommittedBy))
	}
	if len(r.Problems) == 0 {
		var qemu, ila int
		for _, l := range v.Loss {
			qemu += l.BeforeStop + l.InPause
			ila += l.ResumeToSwitch
		}
		r.Verdict = fmt.Sprintf("PASS: nothing lost after the switch; %d packet(s) lost around QEMU's pause (guest paused %v), %d between the guest's resume and the old NVE's redirect %v later",
			qemu, time.Duration(v.Paused).Round(100*time.Microsecond), ila, v.OldNVERedirect.Sub(v.GuestResumed).Round(100*time.Microsecond))
	} else {
		r.Verdict = "FAIL: " + strings.Join(r.Problems, "; ")
	}
}
