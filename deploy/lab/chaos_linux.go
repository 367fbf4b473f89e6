//go:build linux

package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// fabricNetnsOf is the fabric namespace of n's data centre.
func (l *Lab) fabricNetnsOf(n *NVE) string {
	if d := l.dcIndex(n.DC); d <= len(l.topo.Fabric.DCs) && l.topo.Fabric.DCs[d-1].FabricNetns != "" {
		return l.topo.Fabric.DCs[d-1].FabricNetns
	}
	return l.topo.FabricNetns
}

// FlapLink sets NVE nve's fabric port (the fabric's end of its underlay
// link) down, waits down, and sets it up again, as a switch port that
// flaps: the NVE's end loses its carrier meanwhile. Nothing is restored
// by the lab afterwards: the fabric's routing (FRR) and the daemons must
// recover on their own.
func (l *Lab) FlapLink(ctx context.Context, nve string, down time.Duration) error {
	return l.flapLink(ctx, nve, func() { sleepCtx(ctx, down) })
}

// flapLink sets nve's fabric port down, calls hold, and sets it up.
func (l *Lab) flapLink(ctx context.Context, nve string, hold func()) error {
	n, err := l.topo.NVEByName(nve)
	if err != nil {
		return err
	}
	fab, err := l.node(l.fabricNetnsOf(n))
	if err != nil {
		return err
	}
	link, err := fab.link(n.Name)
	if err != nil {
		return err
	}
	if err := fab.h.LinkSetDown(link); err != nil {
		return fmt.Errorf("flap %s: set %s down in %s: %w", nve, n.Name, fab.name(), err)
	}
	hold()
	if err := fab.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("flap %s: set %s up in %s: %w", nve, n.Name, fab.name(), err)
	}
	return ctx.Err()
}

// IladTasks is what NVE nve's ilad says of its local tasks (its local API).
func (l *Lab) IladTasks(ctx context.Context, nve string) ([]locator.TaskStatus, error) {
	if _, err := l.topo.NVEByName(nve); err != nil {
		return nil, err
	}
	c, err := locator.NewClient(l.iladSock(nve))
	if err != nil {
		return nil, err
	}
	ts, err := c.Tasks(ctx)
	if err != nil {
		return nil, fmt.Errorf("tasks of %s: %w", nve, err)
	}
	return ts, nil
}

// FabricPortAddrs lists the IPv6 addresses of the fabric's port to NVE nve.
func (l *Lab) FabricPortAddrs(nve string) ([]netip.Addr, error) {
	n, err := l.topo.NVEByName(nve)
	if err != nil {
		return nil, err
	}
	fab, err := l.node(l.fabricNetnsOf(n))
	if err != nil {
		return nil, err
	}
	link, err := fab.link(n.Name)
	if err != nil {
		return nil, err
	}
	as, err := fab.h.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s in %s: %w", n.Name, fab.name(), err)
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip)
		}
	}
	return out, nil
}

// Chaos scenarios (`ilalab chaos`, docs/RELIABILITY.md). The victim is
// the second NVE (its first task is the flows' destination), the mover a
// task of the third NVE that moves to the first during the fault.
const (
	ChaosKillIlad   = "kill-ilad"   // kill -9 of the victim NVE's ilad, started again after the fault
	ChaosKillMapsrv = "kill-mapsrv" // kill -9 of mapsrv (and the etcd it embeds)
	// ChaosKillEtcd kills etcd: every member of the lab's cluster
	// (--etcd-members 3), or with the embedded etcd mapsrv's process.
	ChaosKillEtcd = "kill-etcd"
	// ChaosEtcdLeader kills the leader of the lab's etcd cluster (needs
	// `ilalab up --etcd-members 3`).
	ChaosEtcdLeader = "etcd-leader"
	ChaosKillRouter = "kill-router" // kill -9 of the ILA router
	ChaosLinkFlap1s = "link-flap-1s"
	ChaosLinkFlap5s = "link-flap-5s"
	// ChaosRegLoss drops 30% of the registration protocol's packets
	// (UDP to and from mapsrv's registration port, move notifications)
	// in the control namespace, with nftables (this kernel has no
	// sch_netem for `tc netem`).
	ChaosRegLoss = "reg-loss"
	// ChaosKillReplica kills (-9) the mapsrv replica the victim NVE speaks
	// to, with another replica up (needs `ilalab up --mapsrv-replicas
	// 2`): the NVEs move to the other one.
	ChaosKillReplica = "kill-mapsrv-replica"
	// ChaosCutReplica cuts the mapsrv replica the victim NVE speaks to
	// off from every NVE (its registration port drops what comes in and
	// goes out: heartbeats, registrations, move notifications) while it
	// stays up and on etcd, with another replica up (needs `ilalab up
	// --mapsrv-replicas 2`): the NVEs move to the other replica, and the
	// cut one, which stops hearing them, must not declare them dead.
	ChaosCutReplica = "cut-mapsrv-replica"
	// ChaosMoves moves random tasks between random NVEs (Moves of them,
	// one after another; mapsrv's flap damping must allow it: `ilalab up
	// --flap-moves`), then checks consistency.
	ChaosMoves = "moves"
)

// ChaosScenarios lists the scenarios `ilalab chaos --all` runs, in order.
var ChaosScenarios = []string{ChaosKillIlad, ChaosKillMapsrv, ChaosKillEtcd, ChaosEtcdLeader, ChaosKillRouter, ChaosLinkFlap1s, ChaosLinkFlap5s, ChaosRegLoss, ChaosKillReplica, ChaosCutReplica, ChaosMoves}

// ChaosConfig configures Chaos. Zero values have defaults (in brackets).
type ChaosConfig struct {
	Scenario string
	// Fault is how long the fault lasts [2s; the link flaps 1s and 5s;
	// registration loss 5s].
	Fault time.Duration
	// Before and After are how long the flows run before the fault and
	// after it ends [1s, 3s].
	Before, After time.Duration
	// Move moves the mover task during the fault.
	Move bool
	// Moves is the number of moves of the moves scenario [1000].
	Moves int
	// Settle is how long the lab may take to become consistent after the
	// scenario [15s].
	Settle time.Duration
	// Seed seeds the moves scenario's choices [the time].
	Seed uint64
}

// ChaosMove is one move made during a scenario and what became of it.
type ChaosMove struct {
	Task string `json:"task"`
	From string `json:"from"`
	To   string `json:"to"`
	// Err is the error the move reported ("" if it succeeded).
	Err string `json:"error,omitempty"`
	// StoreNVE is where the store has the task after the scenario.
	StoreNVE string   `json:"store_nve"`
	Took     Duration `json:"took"`
}

// ChaosResult is what one scenario measured.
type ChaosResult struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Fault    Duration  `json:"fault"`
	// Window is the loss the scenario justifies (the victim's own link
	// is down): pings sent meanwhile are lost; 0: none.
	Window   Duration     `json:"window"`
	Flows    []*FlowStats `json:"flows"`
	PingLost int          `json:"ping_lost"`
	PingSent int          `json:"ping_sent"`
	// MoverLost and MoverSent count the victim's ping towards the task
	// that moves (with ChaosConfig.Move).
	MoverLost   int         `json:"mover_ping_lost,omitempty"`
	MoverSent   int         `json:"mover_ping_sent,omitempty"`
	LongestGap  Duration    `json:"longest_gap"`
	TCPSurvived bool        `json:"tcp_survived"`
	Moves       []ChaosMove `json:"moves,omitempty"`
	// MovesFailed counts moves that reported failure, FailedButHappened
	// those of them the store has on their destination anyway,
	// OKButNotHappened successful moves the store does not have there.
	MovesFailed       int          `json:"moves_failed"`
	FailedButHappened int          `json:"failed_but_happened"`
	OKButNotHappened  int          `json:"ok_but_not_happened"`
	Consistency       *Consistency `json:"consistency"`
	// DatapathDrops lists the datapath drop counters (per NVE and
	// router, from their metrics) that grew while the flows ran: where
	// the packets a scenario lost were dropped, when the datapath did.
	DatapathDrops []string `json:"datapath_drops,omitempty"`
	Notes         []string `json:"notes,omitempty"`
	Problems      []string `json:"problems,omitempty"`
	Verdict       string   `json:"verdict"`
}

// flapRelearn is how long after a flapped port comes back the fabric may
// take to route the NVE's locator again: FRR's zebra re-resolves the BGP
// route's next hop once the port's connected route is back (measured
// 100-200 ms on a loaded 2-core machine).
const flapRelearn = 300 * time.Millisecond

// chaosPingInterval and chaosStreamInterval are the flows' rates.
const (
	chaosPingInterval   = 10 * time.Millisecond
	chaosStreamInterval = 10 * time.Millisecond
)

// Chaos runs one scenario under a 10 ms ping and a TCP stream from the
// first NVE's task to the victim's, then checks that every NVE agrees
// with the store (CheckConsistency) and judges the run.
func (l *Lab) Chaos(ctx context.Context, cfg ChaosConfig) (*ChaosResult, error) {
	if !slices.Contains(ChaosScenarios, cfg.Scenario) {
		return nil, fmt.Errorf("chaos scenario %q: want one of %s", cfg.Scenario, strings.Join(ChaosScenarios, ", "))
	}
	if l.cfg.UnderlayOnly {
		return nil, errors.New("chaos: the lab runs no ILA daemons (--underlay-only)")
	}
	if cfg.Scenario == ChaosEtcdLeader && l.topo.Etcd.Members <= 1 {
		return nil, errors.New("chaos etcd-leader: the lab runs mapsrv's embedded etcd (ilalab up --etcd-members 3)")
	}
	if (cfg.Scenario == ChaosKillReplica || cfg.Scenario == ChaosCutReplica) && len(l.topo.Mapsrv.Replicas) < 2 {
		return nil, fmt.Errorf("chaos %s: the lab runs one mapsrv (ilalab up --mapsrv-replicas 2)", cfg.Scenario)
	}
	if len(l.topo.NVEs) < 3 {
		return nil, fmt.Errorf("chaos: needs 3 NVEs (victim, mover's source and destination), the lab has %d", len(l.topo.NVEs))
	}
	if cfg.Fault == 0 {
		cfg.Fault = 2 * time.Second
		switch cfg.Scenario {
		case ChaosLinkFlap1s:
			cfg.Fault = time.Second
		case ChaosLinkFlap5s, ChaosRegLoss:
			cfg.Fault = 5 * time.Second
		}
	}
	if cfg.Before == 0 {
		cfg.Before = time.Second
	}
	if cfg.After == 0 {
		cfg.After = 3 * time.Second
	}
	if cfg.Moves == 0 {
		cfg.Moves = 1000
	}
	if cfg.Settle == 0 {
		cfg.Settle = 15 * time.Second
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	src, victim, mover, err := l.chaosCast()
	if err != nil {
		return nil, err
	}
	for _, t := range []*Task{src, victim, mover} {
		m, err := l.Mapped(ctx, t.Name)
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if m.NVE != t.NVE || m.State != string(ila.StateActive) {
			return nil, fmt.Errorf("chaos: the lab is not as it started: the store has %s %s on %s, the lab on %s (an earlier failed move?); start a fresh lab", t.Name, m.State, m.NVE, t.NVE)
		}
	}
	homes := map[string]string{}
	for _, t := range l.topo.Tasks {
		homes[t.Name] = t.NVE
	}
	r := &ChaosResult{Scenario: cfg.Scenario, Started: time.Now(), Fault: Duration(cfg.Fault)}
	if cfg.Scenario == ChaosMoves {
		r.Fault = 0
	}
	l.progress("chaos %s: ping and TCP %s -> %s (on %s)", cfg.Scenario, src.Name, victim.Name, victim.NVE)

	// The flows run on a view of the lab of their own (the Lab is not safe
	// for concurrent use: the fault and the move change it meanwhile).
	fv, err := l.flowView(src, victim, mover)
	if err != nil {
		return nil, err
	}
	countersBefore, unread := l.DatapathCounters(ctx)
	for _, u := range unread {
		r.Notes = append(r.Notes, "datapath counters not read before the flows: "+u)
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	type flow struct {
		st  *FlowStats
		err error
	}
	pingc, tcpc, moverc := make(chan flow, 1), make(chan flow, 1), make(chan flow, 1)
	go func() {
		st, err := fv.Ping(fctx, src.Name, victim.SIR, chaosPingInterval, 0, 500*time.Millisecond)
		pingc <- flow{st, err}
	}()
	if cfg.Move {
		// The victim's task towards the task that moves: the victim's
		// NVE must follow the move (weakness 1: a stale NVE).
		go func() {
			st, err := fv.Ping(fctx, victim.Name, mover.SIR, chaosPingInterval, 0, 500*time.Millisecond)
			moverc <- flow{st, err}
		}()
	} else {
		close(moverc)
	}
	go func() {
		st, err := fv.Stream(fctx, src.Name, victim.Name, chaosStreamInterval)
		tcpc <- flow{st, err}
	}()
	sleepCtx(ctx, cfg.Before)

	// hold is the fault's duration: with a move, the move is made
	// halfway through, in this goroutine; the fault lasts at least
	// cfg.Fault, longer if the move takes longer.
	var faultStart, faultEnd time.Time
	hold := func() {
		faultStart = time.Now()
		if cfg.Move {
			sleepCtx(ctx, cfg.Fault/2)
			r.Moves = append(r.Moves, l.chaosMove(ctx, mover.Name, l.topo.NVEs[0].Name))
		}
		if rest := cfg.Fault - time.Since(faultStart); rest > 0 {
			sleepCtx(ctx, rest)
		}
		faultEnd = time.Now()
	}
	var faultErr error
	switch cfg.Scenario {
	case ChaosKillIlad:
		faultErr = l.killFor(ctx, procIlad(victim.NVE), hold, func() error { return l.StartIlad(ctx, victim.NVE) })
	case ChaosKillMapsrv:
		faultErr = l.killFor(ctx, procMapsrv, hold, func() error { return l.StartMapsrv(ctx) })
	case ChaosKillEtcd:
		if l.topo.Etcd.Members <= 1 {
			r.Notes = append(r.Notes, "the lab's etcd is embedded in mapsrv: this kills that process (as kill-mapsrv)")
			faultErr = l.killFor(ctx, procMapsrv, hold, func() error { return l.StartMapsrv(ctx) })
			break
		}
		var members []int
		for i := 1; i <= l.topo.Etcd.Members; i++ {
			members = append(members, i)
		}
		faultErr = l.killEtcdFor(ctx, members, hold)
	case ChaosEtcdLeader:
		var leader int
		if leader, faultErr = l.EtcdLeader(ctx, 10*time.Second); faultErr != nil {
			break
		}
		r.Notes = append(r.Notes, fmt.Sprintf("killed the etcd leader, e%d of %d", leader, l.topo.Etcd.Members))
		faultErr = l.killEtcdFor(ctx, []int{leader}, hold)
	case ChaosKillReplica:
		var i int
		var name string
		if i, name, faultErr = l.ReplicaOf(ctx, victim.NVE); faultErr != nil {
			break
		}
		r.Notes = append(r.Notes, fmt.Sprintf("killed mapsrv replica %s, the one %s spoke to (%d replicas)", name, victim.NVE, len(l.topo.Mapsrv.Replicas)))
		faultErr = l.killFor(ctx, procMapsrvReplica(i), hold, func() error { return l.StartMapsrvReplica(ctx, i) })
		if faultErr == nil {
			if _, now, err := l.ReplicaOf(ctx, victim.NVE); err == nil {
				r.Notes = append(r.Notes, fmt.Sprintf("%s speaks to %s after the fault", victim.NVE, now))
			}
		}
	case ChaosCutReplica:
		var i int
		var name string
		if i, name, faultErr = l.ReplicaOf(ctx, victim.NVE); faultErr != nil {
			break
		}
		before, err := l.livenessOf(ctx, victim.NVE)
		if err != nil {
			faultErr = err
			break
		}
		r.Notes = append(r.Notes, fmt.Sprintf("cut mapsrv replica %s, the one %s spoke to, off from the NVEs (%d replicas)", name, victim.NVE, len(l.topo.Mapsrv.Replicas)))
		faultErr = l.cutReplica(ctx, i, hold)
		if faultErr != nil {
			break
		}
		if _, now, err := l.ReplicaOf(ctx, victim.NVE); err == nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s speaks to %s after the fault", victim.NVE, now))
		}
		// The cut replica went on deciding on its own: it must not have
		// declared the victim dead (a death bumps the epoch).
		if after, err := l.livenessOf(ctx, victim.NVE); err != nil {
			r.Problems = append(r.Problems, err.Error())
		} else if after.Epoch != before.Epoch || after.State != mapsrv.NVEAlive {
			r.Problems = append(r.Problems, fmt.Sprintf("%s after the cut: %s, epoch %d (was %d): declared dead by a replica that only stopped hearing it", victim.NVE, after.State, after.Epoch, before.Epoch))
		} else {
			r.Notes = append(r.Notes, fmt.Sprintf("%s stayed alive (epoch %d), decided by %s", victim.NVE, after.Epoch, after.Replica))
		}
	case ChaosKillRouter:
		faultErr = l.killFor(ctx, procRouter, hold, func() error { return l.startRouter(ctx) })
	case ChaosLinkFlap1s, ChaosLinkFlap5s:
		if !l.frr() {
			r.Notes = append(r.Notes, "static fabric: nothing re-learns the route the kernel flushes when the port goes down (use the FRR fabric)")
		}
		faultErr = l.flapLink(ctx, victim.NVE, hold)
		r.Window = Duration(faultEnd.Sub(faultStart) + flapRelearn)
	case ChaosRegLoss:
		faultErr = l.regLoss(ctx, 30, hold)
	case ChaosMoves:
		r.Moves = l.randomMoves(ctx, cfg.Moves, cfg.Seed)
	}
	if faultErr != nil {
		stop()
		<-pingc
		<-tcpc
		<-moverc
		return nil, fmt.Errorf("chaos %s: %w", cfg.Scenario, faultErr)
	}
	if !faultEnd.IsZero() {
		r.Fault = Duration(faultEnd.Sub(faultStart))
	}
	sleepCtx(ctx, cfg.After)
	stop()
	p, t := <-pingc, <-tcpc
	countersAfter, unread := l.DatapathCounters(ctx)
	for _, u := range unread {
		r.Notes = append(r.Notes, "datapath counters not read after the flows: "+u)
	}
	r.DatapathDrops = dropDeltas(countersBefore, countersAfter)
	if p.err != nil {
		return nil, fmt.Errorf("chaos %s: ping: %w", cfg.Scenario, p.err)
	}
	r.Flows = append(r.Flows, p.st)
	r.PingLost, r.PingSent, r.LongestGap = p.st.Lost, p.st.Sent, p.st.LongestGap
	if t.err != nil {
		r.Flows = append(r.Flows, &FlowStats{Name: "tcp " + src.Name + " -> " + victim.Name, Kind: "tcp", Error: t.err.Error()})
	} else {
		r.Flows = append(r.Flows, t.st)
		r.TCPSurvived = t.st.Error == ""
	}
	if m, ok := <-moverc; ok {
		if m.err != nil {
			return nil, fmt.Errorf("chaos %s: ping: %w", cfg.Scenario, m.err)
		}
		r.Flows = append(r.Flows, m.st)
		r.MoverLost, r.MoverSent = m.st.Lost, m.st.Sent
	}
	c, err := l.CheckConsistency(ctx, cfg.Settle)
	if err != nil {
		return nil, fmt.Errorf("chaos %s: %w", cfg.Scenario, err)
	}
	r.Consistency = c
	l.judgeMoves(ctx, r)
	r.judge()
	// Back home, for the next scenario.
	for _, t := range l.topo.Tasks {
		if h := homes[t.Name]; t.NVE != h && t.VM == nil && !t.IPv4.IsValid() {
			if m := l.chaosMove(ctx, t.Name, h); m.Err != "" {
				r.Notes = append(r.Notes, fmt.Sprintf("moving %s back to %s failed: %s", t.Name, h, m.Err))
			}
		}
	}
	return r, nil
}

// flowView is a copy of the lab for the flows' goroutines: its own
// topology and node map (the nodes themselves are shared, and only used
// through their namespace), with the flows' namespaces open.
func (l *Lab) flowView(ts ...*Task) (*Lab, error) {
	for _, t := range ts {
		if _, err := l.node(t.Netns); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(l.topo)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var topo Topology
	if err := json.Unmarshal(b, &topo); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	return &Lab{cfg: l.cfg, dir: l.dir, topo: &topo, procs: map[string]*proc{}, bins: maps.Clone(l.bins), nodes: maps.Clone(l.nodes)}, nil
}

// chaosCast picks the flows' source task (on the first NVE), the victim
// task (on the second) and the mover (on the third).
func (l *Lab) chaosCast() (src, victim, mover *Task, err error) {
	first := func(nve string) *Task {
		for i := range l.topo.Tasks {
			t := &l.topo.Tasks[i]
			if t.NVE == nve && t.VM == nil && !t.IPv4.IsValid() && t.Tenant == l.topo.Tasks[0].Tenant {
				return t
			}
		}
		return nil
	}
	src, victim, mover = first(l.topo.NVEs[0].Name), first(l.topo.NVEs[1].Name), first(l.topo.NVEs[2].Name)
	if src == nil || victim == nil || mover == nil {
		return nil, nil, nil, errors.New("chaos: needs an IPv6 task of one tenant on each of the first three NVEs (move them back?)")
	}
	return src, victim, mover, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// killFor kills a daemon with SIGKILL, calls hold and starts it again.
func (l *Lab) killFor(ctx context.Context, proc string, hold func(), start func() error) error {
	if p, ok := readPIDs(l.dir)[proc]; ok && (l.procs[proc] == nil || l.procs[proc].PID != p.PID) {
		l.procs[proc] = p
	}
	l.progress("kill -9 %s", proc)
	if err := l.Kill(proc); err != nil {
		return err
	}
	hold()
	if err := start(); err != nil {
		return fmt.Errorf("start %s again: %w", proc, err)
	}
	return l.save()
}

// killEtcdFor kills etcd members with SIGKILL, calls hold and starts
// them again (they rejoin with their data).
func (l *Lab) killEtcdFor(ctx context.Context, members []int, hold func()) error {
	for _, i := range members {
		if p, ok := readPIDs(l.dir)[procEtcd(i)]; ok && (l.procs[procEtcd(i)] == nil || l.procs[procEtcd(i)].PID != p.PID) {
			l.procs[procEtcd(i)] = p
		}
		l.progress("kill -9 %s", procEtcd(i))
		if err := l.Kill(procEtcd(i)); err != nil {
			return err
		}
	}
	hold()
	for _, i := range members {
		if err := l.StartEtcdMember(i); err != nil {
			return fmt.Errorf("start %s again: %w", procEtcd(i), err)
		}
	}
	for _, i := range members {
		if err := l.waitEtcdMember(ctx, i, 15*time.Second); err != nil {
			return err
		}
	}
	return l.save()
}

// chaosMove moves task to NVE to (hot) and records what it reported.
func (l *Lab) chaosMove(ctx context.Context, task, to string) ChaosMove {
	t, err := l.topo.TaskByName(task)
	if err != nil {
		return ChaosMove{Task: task, To: to, Err: err.Error()}
	}
	m := ChaosMove{Task: task, From: t.NVE, To: to}
	l.progress("moving %s from %s to %s", task, t.NVE, to)
	start := time.Now()
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := l.Move(mctx, task, to, MoveHot); err != nil {
		m.Err = err.Error()
	}
	m.Took = Duration(time.Since(start))
	return m
}

// randomMoves makes n hot moves of random tasks to random other NVEs,
// one after another.
func (l *Lab) randomMoves(ctx context.Context, n int, seed uint64) []ChaosMove {
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	var ts []string
	for _, t := range l.topo.Tasks {
		if t.VM == nil && !t.IPv4.IsValid() {
			ts = append(ts, t.Name)
		}
	}
	var out []ChaosMove
	for i := 0; i < n && ctx.Err() == nil; i++ {
		name := ts[rng.IntN(len(ts))]
		t, _ := l.topo.TaskByName(name)
		var to []string
		for _, nv := range l.topo.NVEs {
			if nv.Name != t.NVE && !nv.Failed {
				to = append(to, nv.Name)
			}
		}
		m := l.chaosMove(ctx, name, to[rng.IntN(len(to))])
		out = append(out, m)
		if i%50 == 49 {
			l.progress("%d of %d moves", i+1, n)
		}
	}
	return out
}

// judgeMoves compares each move's report with the store: the last move
// of each task must have left it where the report says.
func (l *Lab) judgeMoves(ctx context.Context, r *ChaosResult) {
	last := map[string]int{}
	for i, m := range r.Moves {
		last[m.Task] = i
		if m.Err != "" {
			r.MovesFailed++
		}
	}
	for task, i := range last {
		m := &r.Moves[i]
		mt, err := l.Mapped(ctx, task)
		if err != nil {
			m.StoreNVE = "? (" + err.Error() + ")"
			continue
		}
		m.StoreNVE = mt.NVE
		switch {
		case m.Err != "" && mt.NVE == m.To:
			r.FailedButHappened++
		case m.Err == "" && mt.NVE != m.To:
			r.OKButNotHappened++
		}
	}
}

// judge sums the result up against issue 18's targets.
func (r *ChaosResult) judge() {
	allowed := int(time.Duration(r.Window) / chaosPingInterval)
	if r.PingLost > allowed {
		if allowed > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("ping lost %d of %d, more than the %v the victim's link was down (%d)", r.PingLost, r.PingSent, time.Duration(r.Window), allowed))
		} else {
			r.Problems = append(r.Problems, fmt.Sprintf("ping lost %d of %d", r.PingLost, r.PingSent))
		}
	}
	if r.MoverLost > allowed {
		r.Problems = append(r.Problems, fmt.Sprintf("the victim's ping towards the moved task lost %d of %d", r.MoverLost, r.MoverSent))
	}
	if !r.TCPSurvived {
		err := ""
		if len(r.Flows) > 1 {
			err = r.Flows[1].Error
		}
		r.Problems = append(r.Problems, "TCP stream broke: "+err)
	}
	if r.FailedButHappened > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d moves reported failure and happened anyway", r.FailedButHappened))
	}
	if r.OKButNotHappened > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d moves reported success and did not happen", r.OKButNotHappened))
	}
	if c := r.Consistency; c != nil && !c.OK {
		r.Problems = append(r.Problems, "inconsistent after "+time.Duration(c.Settled).Round(time.Millisecond).String()+": "+strings.Join(c.Problems, "; "))
	}
	if len(r.Problems) == 0 {
		r.Verdict = "PASS"
	} else {
		r.Verdict = "FAIL: " + strings.Join(r.Problems, "; ")
	}
}

// Text writes the result in plain words.
func (r *ChaosResult) Text(w io.Writer) {
	fmt.Fprintf(w, "chaos %s (fault %v), %s\n", r.Scenario, time.Duration(r.Fault).Round(time.Millisecond), r.Started.UTC().Format(time.RFC3339))
	for _, f := range r.Flows {
		fmt.Fprintf(w, "  %s: sent %d, lost %d, longest gap %v", f.Name, f.Sent, f.Lost, time.Duration(f.LongestGap).Round(time.Millisecond))
		if f.Error != "" {
			fmt.Fprintf(w, ", broke: %s", f.Error)
		}
		fmt.Fprintln(w)
	}
	if len(r.Moves) > 0 {
		fmt.Fprintf(w, "  moves: %d, reported failed %d, failed but happened %d, succeeded but did not happen %d\n", len(r.Moves), r.MovesFailed, r.FailedButHappened, r.OKButNotHappened)
		shown := 0
		for _, m := range r.Moves {
			if m.Err != "" && shown < 5 {
				fmt.Fprintf(w, "    %s %s -> %s: %s", m.Task, m.From, m.To, m.Err)
				if m.StoreNVE != "" {
					fmt.Fprintf(w, " (store: %s)", m.StoreNVE)
				}
				fmt.Fprintln(w)
				shown++
			}
		}
		if len(r.Moves) <= 3 {
			for _, m := range r.Moves {
				if m.Err == "" {
					fmt.Fprintf(w, "    %s %s -> %s in %v (store: %s)\n", m.Task, m.From, m.To, time.Duration(m.Took).Round(time.Millisecond), m.StoreNVE)
				}
			}
		}
	}
	if r.Consistency != nil {
		fmt.Fprintf(w, "  %s", r.Consistency.Text())
		if t := r.Consistency.InitiallyText(); t != "" {
			fmt.Fprintf(w, "    %s\n", t)
		}
	}
	if len(r.DatapathDrops) > 0 {
		fmt.Fprintf(w, "  datapath drops while the flows ran: %s\n", strings.Join(r.DatapathDrops, ", "))
	} else {
		fmt.Fprintf(w, "  datapath drops while the flows ran: none\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintf(w, "  %s\n", r.Verdict)
}
