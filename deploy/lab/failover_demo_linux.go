//go:build linux

package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FailoverReport is what `ilalab demo --scenario failover` writes to
// failover-report.json.
type FailoverReport struct {
	Started  time.Time       `json:"started"`
	Lab      string          `json:"lab"`
	Timers   Timers          `json:"timers"`
	Failover *FailoverResult `json:"failover"`
	Flows    []*FlowStats    `json:"flows"`
	// Timeline, after the failure: mapsrv's decision (its "nve state ...
	// state=dead" log line), its commit of the task on the standby, the
	// ILA router applying it, the standby's ilad promoting the task, the
	// recovered NVE letting it go.
	Timeline []Event `json:"timeline"`
	// TCP is the TCP echo flow's connections: the standby has none of the
	// task's TCP state, so its connection breaks and the client connects
	// again (Flows holds its chunks: Lost are those sent on the broken
	// connection, LongestGap the TCP outage).
	TCP *TCPFailover `json:"tcp,omitempty"`
	// AfterRecover is where mapsrv maps the task once the failed NVE is
	// back (it must stay on the standby).
	AfterRecover MappedTask `json:"after_recover"`
	Verdict      string     `json:"verdict"`
	Problems     []string   `json:"problems,omitempty"`
}

// Event is one step of a failover timeline.
type Event struct {
	What  string    `json:"what"`
	At    time.Time `json:"at,omitzero"`
	After Duration  `json:"after_failure"`
	Seen  bool      `json:"seen"`
	Note  string    `json:"note,omitempty"`
}

// RunFailoverDemo: the last IPv6 task gets a hot standby on the second
// task's NVE; the first task pings it every 10 ms and runs a TCP echo
// flow to it; its NVE fails; the report times detection, commit and each
// node's switch, and the ping outage; then the NVE recovers and must not
// take the task back. The lab's standby is a replica namespace without the
// task's TCP state (a hypervisor's hot standby would replicate it): the
// TCP connection breaks, and the report says when the client saw it and
// when its new connection, to the standby, carried data again.
func (l *Lab) RunFailoverDemo(ctx context.Context, before, after time.Duration, out string) (*FailoverReport, error) {
	var v6 []*Task
	for i := range l.topo.Tasks {
		if !l.topo.Tasks[i].IPv4.IsValid() {
			v6 = append(v6, &l.topo.Tasks[i])
		}
	}
	if len(v6) < 3 || len(l.topo.NVEs) < 3 {
		return nil, fmt.Errorf("failover demo: needs 3 IPv6 tasks on 3 NVEs, lab has %d tasks, %d NVEs", len(v6), len(l.topo.NVEs))
	}
	pinger, dst := v6[0], v6[len(v6)-1]
	standby := v6[1].NVE
	failed := dst.NVE
	rep := &FailoverReport{Started: time.Now(), Lab: l.cfg.Name, Timers: l.topo.Timers}
	if err := l.Standby(ctx, dst.Name, standby); err != nil {
		return nil, err
	}
	l.progress("checking that %s reaches %s", pinger.Name, dst.Name)
	if err := l.WaitReachable(ctx, pinger.Name, dst.SIR, 10*time.Second); err != nil {
		return nil, err
	}
	// Echo servers on the task and on its replica: after the failover
	// the client's new connection reaches the replica.
	echo := netip.AddrPortFrom(dst.SIR, tcpEchoPort)
	for _, ns := range []string{dst.Netns, dst.StandbyNetns} {
		stop, err := l.echoServer(ns, echo)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	l.progress("ping %s -> %s every 10ms, TCP echo to %s; %s fails after %v", pinger.Name, dst.Name, echo, failed, before)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		st  *FlowStats
		err error
	}
	pc := make(chan res, 1)
	go func() {
		s, err := l.Ping(pctx, pinger.Name, dst.SIR, 10*time.Millisecond, 0, 500*time.Millisecond)
		pc <- res{s, err}
	}()
	type tres struct {
		st  *FlowStats
		tf  *TCPFailover
		err error
	}
	tc := make(chan tres, 1)
	go func() {
		s, tf, err := l.tcpReconnecting(pctx, pinger, echo, 10*time.Millisecond, 2*time.Second)
		tc <- tres{s, tf, err}
	}()
	select {
	case <-time.After(before):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	failedAt := time.Now()
	if err := l.Fail(ctx, failed); err != nil {
		cancel()
		<-pc
		<-tc
		return rep, err
	}
	fr, err := l.WaitFailover(ctx, dst.Name, failedAt, 10*time.Second)
	rep.Failover = fr
	if err != nil {
		cancel()
		<-pc
		<-tc
		return rep, err
	}
	// TCP needs its retransmission timeout to meet the replica's reset:
	// at least 3s of traffic after the failover.
	time.Sleep(max(after, 3*time.Second))
	cancel()
	p := <-pc
	t := <-tc
	if p.err != nil {
		return rep, p.err
	}
	if t.err != nil {
		return rep, t.err
	}
	rep.Flows = []*FlowStats{p.st, t.st}
	rep.TCP = t.tf
	l.progress("recovering %s", failed)
	if err := l.Recover(ctx, failed); err != nil {
		return rep, err
	}
	time.Sleep(time.Second)
	rep.AfterRecover, _ = l.Mapped(ctx, dst.Name)

	to, _ := l.topo.NVEByName(standby)
	ev := func(what string, at time.Time, note string) {
		e := Event{What: what, Note: note}
		if !at.IsZero() {
			e.At, e.Seen, e.After = at, true, Duration(at.Sub(failedAt))
		}
		rep.Timeline = append(rep.Timeline, e)
	}
	logs := filepath.Join(l.dir, "logs")
	at, note := firstTextLine(filepath.Join(logs, procMapsrv+".log"), failedAt, `msg="nve state"`, "nve="+failed, "state=dead")
	ev("mapsrv declares "+failed+" dead", at, note)
	ev("mapsrv commits "+dst.Name+" on "+standby, fr.Committed, "")
	at, note = firstLine(l.eventsPath(l.routerEvents()), failedAt, dst.SIR.String(), to.Locator.String())
	ev("ILA router applies the new mapping", at, note)
	at, note = firstLine(filepath.Join(logs, procIlad(standby)+".log"), failedAt, "standby task promoted", dst.SIR.String())
	ev(standby+" promotes its standby", at, note)
	if b := rep.TCP.firstBreak(failedAt); b != nil {
		ev("tcp: the client sees its connection break ("+b.Error+")", b.At, "")
		ev("tcp: new connection (to the standby) established", b.Connected, "not reconnected")
		ev("tcp: first echo on the new connection", b.FirstEcho, "no echo")
	} else {
		ev("tcp: the client sees its connection break", time.Time{}, "it did not break")
	}
	at, note = firstLine(filepath.Join(logs, procIlad(failed)+".log"), failedAt, "detaching it here", dst.SIR.String())
	ev(failed+" (recovered) lets "+dst.Name+" go", at, note)

	// The 500 ms target is the ping's: the datapath's switch. The TCP
	// flow is judged on coming back at all (its outage is the client's
	// retransmission timeout plus a reconnect; reported).
	if f := rep.Flows[0]; f.Error != "" {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s broke: %s", f.Name, f.Error))
	} else if g := time.Duration(f.LongestGap); g > 500*time.Millisecond {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s: outage %v, target 500ms", f.Name, g))
	}
	if b := rep.TCP.firstBreak(failedAt); b == nil || b.FirstEcho.IsZero() {
		rep.Problems = append(rep.Problems, "tcp: no new connection carried data after the failover")
	}
	if rep.AfterRecover.NVE != standby {
		rep.Problems = append(rep.Problems, fmt.Sprintf("after %s recovered, %s is on %q, want %s", failed, dst.Name, rep.AfterRecover.NVE, standby))
	}
	if len(rep.Problems) == 0 {
		rep.Verdict = "PASS: traffic (ping) resumed within 500ms of the NVE's death, TCP on a new connection, and the recovered NVE did not take the task back"
	} else {
		rep.Verdict = "FAIL: " + strings.Join(rep.Problems, "; ")
	}
	if out == "" {
		out = l.dir
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return rep, fmt.Errorf("demo output: %w", err)
	}
	return rep, writeJSON(filepath.Join(out, "failover-report.json"), rep)
}

// Text writes the failover report in plain words.
func (r *FailoverReport) Text(w io.Writer) {
	fmt.Fprintf(w, "ILA lab failover demo, %s (heartbeat %v)\n\n", r.Started.UTC().Format(time.RFC3339), time.Duration(r.Timers.Heartbeat))
	if f := r.Failover; f != nil {
		fmt.Fprintf(w, "%s's NVE %s failed (ilad killed, link down); its hot standby on %s took over (version %d).\n\n", f.Task, f.From, f.To, f.Version)
	}
	for _, f := range r.Flows {
		fmt.Fprintf(w, "%s (every %v): sent %d, received %d, lost %d; outage (longest gap between replies) %v\n",
			f.Name, time.Duration(f.Interval), f.Sent, f.Received, f.Lost, time.Duration(f.LongestGap).Round(10*time.Microsecond))
	}
	if t := r.TCP; t != nil {
		fmt.Fprintf(w, "tcp: %d connection(s), %d failed attempt(s); the standby has no TCP state, so the connection breaks and the client connects again\n", t.Connections, t.DialErrors)
	}
	fmt.Fprintln(w, "\nTimeline after the failure:")
	for _, e := range r.Timeline {
		if e.Seen {
			fmt.Fprintf(w, "  %9v  %s\n", time.Duration(e.After).Round(10*time.Microsecond), e.What)
		} else {
			fmt.Fprintf(w, "  %9s  %s (%s)\n", "-", e.What, e.Note)
		}
	}
	fmt.Fprintf(w, "\nAfter the recovery mapsrv maps it to %s (version %d).\n\n%s\n", r.AfterRecover.NVE, r.AfterRecover.Version, r.Verdict)
}

// firstTextLine is firstLine for slog text logs (time=... first).
func firstTextLine(path string, since time.Time, want ...string) (time.Time, string) {
	return firstLineWith(path, since, func(line string) (time.Time, bool) {
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, ts)
		return t, strings.HasPrefix(line, "time=") && err == nil
	}, want...)
}

// firstBreak is the first break of the TCP flow after the failure.
func (t *TCPFailover) firstBreak(after time.Time) *TCPBreak {
	if t == nil {
		return nil
	}
	for i := range t.Breaks {
		if !t.Breaks[i].At.Before(after) {
			return &t.Breaks[i]
		}
	}
	return nil
}
