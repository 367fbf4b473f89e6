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

// lossWindow is when a live migration may lose packets without ILA
// adding any: from the guest's stop at the source until the commit at the
// destination, with slack for the old NVE and the senders' NVEs to follow
// the commit.
func (v *VMReport) lossWindow(slack time.Duration) (from, to time.Time) {
	end := v.Committed
	if end.Before(v.GuestResumed) {
		end = v.GuestResumed
	}
	return v.GuestStopped.Add(-time.Millisecond), end.Add(slack)
}

// lostOutside counts f's lost packets sent outside [from, to] (send times
// recorded by the flow, else estimated from its start and interval).
func (f *FlowStats) lostOutside(from, to time.Time) int {
	n := 0
	for _, seq := range f.LostSeqs {
		at, ok := f.sentAt[seq]
		if !ok {
			at = f.FirstSent.Add(time.Duration(seq) * time.Duration(f.Interval))
		}
		if at.Before(from) || at.After(to) {
			n++
		}
	}
	return n
}

// judgeVM: the migration may lose what is sent while the guest cannot
// answer (QEMU's pause, until the commit); anything else, a broken TCP
// connection or DNS not following is a problem.
func (r *Report) judgeVM() {
	v := r.VM
	from, to := v.lossWindow(20 * time.Millisecond)
	for _, f := range r.Flows {
		if n := f.lostOutside(from, to); n > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s lost %d packets outside the guest's pause (%d in all)", f.Name, n, f.Lost))
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
		r.Verdict = fmt.Sprintf("PASS: the migration lost only what QEMU's pause took (guest paused %v)", time.Duration(v.Paused).Round(100*time.Microsecond))
	} else {
		r.Verdict = "FAIL: " + strings.Join(r.Problems, "; ")
	}
}
