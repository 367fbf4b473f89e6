package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// NVE liveness (docs/FAILOVER.md). NVEs send heartbeats over the
// registration protocol every LivenessConfig.Interval. The replica that
// receives an NVE's heartbeats tracks it in memory and decides for it: an
// NVE not heard for SuspectAfter intervals is suspect, for DeadAfter
// intervals dead. Every change of state (not every heartbeat) is written to
// the NVE's record (NVERecord.Liveness) in one transaction on its revision,
// logged once and counted. Declaring an NVE dead bumps its epoch and fails
// its tasks over (failover.go); registrations and heartbeats from the NVE
// under an older epoch are then refused (ErrFenced) until it rejoins.

// NVEState is an NVE's liveness state.
type NVEState string

// NVE liveness states.
const (
	NVEAlive   NVEState = "alive"
	NVESuspect NVEState = "suspect"
	NVEDead    NVEState = "dead"
)

// NVELiveness is the liveness part of an NVE's record, written on changes
// only.
type NVELiveness struct {
	State NVEState `json:"state"`
	// Epoch counts the NVE's lives: 1 at its first heartbeat, +1 each time
	// it is declared dead. Requests carrying an older epoch are fenced.
	Epoch uint32 `json:"epoch"`
	// LastHeard is the last heartbeat known when the state was written
	// (the replica keeps the current one in memory: LivenessStatus).
	LastHeard time.Time `json:"last_heard,omitzero"`
	// Since is when the NVE entered State.
	Since time.Time `json:"since,omitzero"`
	// Replica is the mapsrv replica that hears the NVE and decides for it.
	Replica string `json:"replica,omitempty"`
}

func checkLiveness(l *NVELiveness) error {
	if l == nil {
		return nil
	}
	switch l.State {
	case NVEAlive, NVESuspect, NVEDead:
	default:
		return fmt.Errorf("liveness state %q: want alive, suspect or dead", l.State)
	}
	return nil
}

// LivenessConfig configures heartbeats and failover.
type LivenessConfig struct {
	// Interval is the NVEs' heartbeat interval (ilad --heartbeat).
	// Default 1s; negative: liveness off (heartbeats are refused).
	Interval time.Duration
	// SuspectAfter and DeadAfter are the missed intervals after which an
	// NVE is suspect and dead. Defaults 2 and 3.
	SuspectAfter, DeadAfter int
	// Replica names this replica in NVE records. Default "mapsrv". Give
	// each replica its own name.
	Replica string
	// HostProbe, if set, asks whether the host at an NVE's underlay
	// address still answers while the NVE is suspect; one that does is
	// not declared dead (hostprobe.go). It must return by ctx's deadline.
	HostProbe func(ctx context.Context, underlay netip.Addr) bool
}

func (c *LivenessConfig) validate() error {
	if c.SuspectAfter < 0 || c.DeadAfter < 0 {
		return fmt.Errorf("mapsrv config: negative liveness count")
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.SuspectAfter == 0 {
		c.SuspectAfter = 2
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = 3
	}
	if c.DeadAfter < c.SuspectAfter {
		return fmt.Errorf("mapsrv config: dead after %d intervals is before suspect after %d", c.DeadAfter, c.SuspectAfter)
	}
	if c.Replica == "" {
		c.Replica = "mapsrv"
	}
	return CheckName("replica", c.Replica)
}

// enabled reports whether heartbeats are taken.
func (c *LivenessConfig) enabled() bool { return c.Interval > 0 }

// liveness is a replica's in-memory view of the NVEs it hears.
type liveness struct {
	mu      sync.Mutex
	nves    map[string]*tracked
	resetAt time.Time // decider baseline after its own stall

	heartbeats, fenced, deaths, revivals, suspects atomic.Uint64
	hostAnswers, deathsHeld                        atomic.Uint64
	failovers, suspensions, standbys               atomic.Uint64
	lastDetect, lastCommit                         atomic.Int64 // nanoseconds
}

type tracked struct {
	heard time.Time
	hold  time.Time // not missed before (a planned restart: HeartbeatHold)
	state NVEState
	epoch uint32
	// applied: the store revision the NVE last reported applied, when;
	// written: the one last written to its status key (applied.go).
	applied, written int64
	appliedAt        time.Time
	api, writtenAPI  string // its local API's URL, reported and written
	// hostSeen: when its host last answered a probe; probed: when the
	// last probe started; probing: one is in flight; held: the death is
	// held off because the host answers (logged once per episode).
	hostSeen, probed time.Time
	probing, held    bool
}

// LivenessStats are the liveness counters of this replica.
type LivenessStats struct {
	// Alive, Suspect, Dead: NVEs this replica decides for, by state.
	Alive, Suspect, Dead int
	Heartbeats, Fenced   uint64
	// Deaths, Revivals, Suspects: state changes written.
	Deaths, Revivals, Suspects uint64
	// Failovers (tasks moved to their standby), Suspensions (tasks
	// without a usable standby), Standbys (standby registrations).
	Failovers, Suspensions, Standbys uint64
	// LastDetection is the time from the last heartbeat to the decision
	// of the last death; LastCommit the time that death took to commit
	// (state and every task).
	LastDetection, LastCommit time.Duration
	// HostAnswers counts probes of a suspect NVE's host that it
	// answered; DeathsHeld, NVEs not declared dead because their host
	// answered (hostprobe.go).
	HostAnswers, DeathsHeld uint64
}

// LivenessStats returns the liveness counters.
func (s *Service) LivenessStats() LivenessStats {
	l := &s.live
	st := LivenessStats{
		Heartbeats: l.heartbeats.Load(), Fenced: l.fenced.Load(),
		Deaths: l.deaths.Load(), Revivals: l.revivals.Load(), Suspects: l.suspects.Load(),
		Failovers: l.failovers.Load(), Suspensions: l.suspensions.Load(), Standbys: l.standbys.Load(),
		LastDetection: time.Duration(l.lastDetect.Load()), LastCommit: time.Duration(l.lastCommit.Load()),
		HostAnswers: l.hostAnswers.Load(), DeathsHeld: l.deathsHeld.Load(),
	}
	l.mu.Lock()
	for _, t := range l.nves {
		switch t.state {
		case NVEAlive:
			st.Alive++
		case NVESuspect:
			st.Suspect++
		case NVEDead:
			st.Dead++
		}
	}
	l.mu.Unlock()
	return st
}

// LastHeard returns when this replica last heard a heartbeat from nve.
func (s *Service) LastHeard(nve string) (time.Time, bool) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	t, ok := s.live.nves[nve]
	if !ok {
		return time.Time{}, false
	}
	return t.heard, true
}

// ErrFenced: the NVE was declared dead after the epoch it speaks under;
// it must rejoin (heartbeat, drop what moved) before registering again.
var ErrFenced = errors.New("fenced: nve declared dead since its epoch")

// checkFence refuses a request from nve under epoch (0: not given).
func checkFence(n NVERecord, epoch uint32) error {
	l := n.Liveness
	switch {
	case l == nil:
		return nil
	case l.State == NVEDead:
		return fmt.Errorf("nve %s declared dead at %s (epoch now %d): heartbeat to rejoin first: %w", n.Name, l.Since.Format(time.RFC3339Nano), l.Epoch, ErrFenced)
	case epoch != 0 && epoch < l.Epoch:
		return fmt.Errorf("nve %s: request under epoch %d, the nve is at epoch %d (declared dead since): %w", n.Name, epoch, l.Epoch, ErrFenced)
	}
	return nil
}

// Heartbeat records that nve is alive and returns its epoch. epoch is the
// one the NVE believes it has (0: it does not know, e.g. it just started).
// An NVE declared dead that speaks under an older epoch gets ErrFenced
// with the current epoch: it must drop what moved away and heartbeat again
// under that epoch to become alive. A dead NVE heartbeating under epoch 0
// (restarted) becomes alive at once.
func (s *Service) Heartbeat(ctx context.Context, nve string, epoch uint32) (uint32, error) {
	return s.HeartbeatHold(ctx, nve, epoch, 0)
}

// HeartbeatHold is Heartbeat from an NVE that announces a planned pause of
// its heartbeats (ilad stopping for a restart; its datapath keeps
// forwarding): it is not missed for hold (capped at Config.MaxLifetime)
// plus the usual dead time. A later heartbeat ends the hold.
func (s *Service) HeartbeatHold(ctx context.Context, nve string, epoch uint32, hold time.Duration) (uint32, error) {
	hold = min(max(hold, 0), s.cfg.MaxLifetime)
	if !s.cfg.Liveness.enabled() {
		return 0, fmt.Errorf("heartbeat from nve %s: liveness is off: %w", nve, ErrInvalid)
	}
	l := &s.live
	l.heartbeats.Add(1)
	now := s.cfg.Now().UTC()
	l.mu.Lock()
	t := l.nves[nve]
	if t != nil && t.state == NVEAlive && (epoch == t.epoch || epoch == 0) {
		t.heard, t.hold = now, now.Add(hold)
		e := t.epoch
		l.mu.Unlock()
		return e, nil
	}
	l.mu.Unlock()
	for attempt := 0; ; attempt++ {
		e, err := s.heartbeatSlow(ctx, nve, epoch, now, hold)
		if errors.Is(err, ErrConflict) && attempt < 4 {
			continue
		}
		if errors.Is(err, ErrFenced) {
			l.fenced.Add(1)
		}
		return e, err
	}
}

func (s *Service) heartbeatSlow(ctx context.Context, nve string, epoch uint32, now time.Time, hold time.Duration) (uint32, error) {
	rec, kv, err := s.getNVE(ctx, nve)
	if err != nil {
		return 0, err
	}
	cur := NVELiveness{Epoch: 1}
	if rec.Liveness != nil {
		cur = *rec.Liveness
	}
	if epoch != 0 && epoch < cur.Epoch {
		return cur.Epoch, fmt.Errorf("heartbeat from nve %s under epoch %d, now %d: %w", nve, epoch, cur.Epoch, ErrFenced)
	}
	me := s.cfg.Liveness.Replica
	if rec.Liveness == nil || cur.State != NVEAlive || cur.Replica != me {
		old, was := cur.State, cur.Replica
		cur.State, cur.Since, cur.LastHeard, cur.Replica = NVEAlive, now, now, me
		rec.Liveness = &cur
		rec.Updated = now
		var b txnBuilder
		b.cond(kv)
		b.put(kv.Key, rec)
		if err := s.commit(ctx, &b, "nve "+nve+" alive"); err != nil {
			return 0, err
		}
		if was != "" && was != me {
			// renew.go: another replica may hold refreshes of its tasks
			// in memory; they get one lifetime from now.
			s.adopt(nve, now)
		}
		if old == NVEDead {
			s.live.revivals.Add(1)
		}
		if old != NVEAlive {
			s.log.Info("nve state", "nve", nve, "state", NVEAlive, "was", string(old), "epoch", cur.Epoch)
		} else {
			s.log.Info("nve heartbeats now decided here", "nve", nve, "replica", me, "epoch", cur.Epoch)
		}
	}
	l := &s.live
	l.mu.Lock()
	if l.nves == nil {
		l.nves = make(map[string]*tracked)
	}
	old := l.nves[nve]
	t := &tracked{heard: now, hold: now.Add(hold), state: NVEAlive, epoch: cur.Epoch}
	if old != nil {
		t.applied, t.written, t.appliedAt = old.applied, old.written, old.appliedAt
		t.api, t.writtenAPI = old.api, old.writtenAPI
	}
	l.nves[nve] = t
	l.mu.Unlock()
	return cur.Epoch, nil
}

// transition writes nve's move to state to (suspect or dead) if this
// replica still decides for it and it is in state from; dead bumps the
// epoch. It returns the NVE's liveness as now stored (nil: none) and
// whether it wrote it.
func (s *Service) transition(ctx context.Context, nve string, from, to NVEState, heard, now time.Time) (*NVELiveness, bool, error) {
	rec, kv, err := s.getNVE(ctx, nve)
	if err != nil {
		return nil, false, err
	}
	l := rec.Liveness
	if l == nil || l.Replica != s.cfg.Liveness.Replica || l.State != from {
		return l, false, nil // another replica decides, or it changed meanwhile
	}
	n := *l
	n.State, n.Since, n.LastHeard = to, now, heard
	if to == NVEDead {
		n.Epoch++
	}
	rec.Liveness = &n
	rec.Updated = now
	var b txnBuilder
	b.cond(kv)
	b.put(kv.Key, rec)
	if err := s.commit(ctx, &b, "nve "+nve+" "+string(to)); err != nil {
		return nil, false, err
	}
	return &n, true, nil
}

// livenessLoop decides suspect and dead NVEs until ctx is done.
func (s *Service) livenessLoop(ctx context.Context) {
	lc := s.cfg.Liveness
	tick := max(lc.Interval/4, 5*time.Millisecond)
	s.adoptLiveness(ctx)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	var lastStatus time.Time
	defer s.probes.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if gap := time.Since(last); gap > 2*lc.Interval {
			// This loop did not run for a while: heartbeats may be
			// waiting in the socket. Nobody is missed for our stall.
			s.live.mu.Lock()
			s.live.resetAt = s.cfg.Now().UTC()
			s.live.mu.Unlock()
			s.log.Warn("liveness decider stalled; every nve gets a full dead time again", "gap", gap)
		}
		last = time.Now()
		if s.replicaStatusDue() {
			if err := s.WriteReplicaStatus(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("write replica status", "err", err)
			}
		}
		s.decide(ctx)
		if last.Sub(lastStatus) >= lc.Interval {
			lastStatus = last
			if err := s.WriteNVEStatus(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("write nve applied revisions", "err", err)
			}
		}
	}
}

// decide runs one pass of the decider.
func (s *Service) decide(ctx context.Context) {
	lc := s.cfg.Liveness
	now := s.cfg.Now().UTC()
	up := s.up.get()
	type due struct {
		nve      string
		from, to NVEState
		heard    time.Time
		missed   time.Duration
	}
	var todo []due
	l := &s.live
	l.mu.Lock()
	for name, t := range l.nves {
		base := t.heard
		if t.hold.After(base) {
			base = t.hold
		}
		if up.After(base) {
			base = up
		}
		if l.resetAt.After(base) {
			base = l.resetAt
		}
		missed := now.Sub(base)
		deadAfter := time.Duration(lc.DeadAfter) * lc.Interval
		if lc.HostProbe != nil && ctx.Err() == nil && l.probeDue(t, now, missed, lc.Interval) {
			s.probes.Add(1)
			go s.probeHost(ctx, name)
		}
		switch {
		case t.state != NVEDead && missed >= deadAfter && lc.HostProbe != nil && hostAnswers(t, now, deadAfter):
			if !t.held {
				t.held = true
				l.deathsHeld.Add(1)
				s.log.Warn("nve agent silent, its host answers: not declared dead, tasks stay", "nve", name, "last_heard", t.heard.Format(time.RFC3339Nano), "host_answered", t.hostSeen.Format(time.RFC3339Nano))
			}
		case t.state != NVEDead && missed >= deadAfter:
			todo = append(todo, due{name, t.state, NVEDead, t.heard, now.Sub(t.heard)})
		case t.state == NVEAlive && missed >= time.Duration(lc.SuspectAfter)*lc.Interval:
			todo = append(todo, due{name, t.state, NVESuspect, t.heard, now.Sub(t.heard)})
		}
	}
	l.mu.Unlock()
	sort.Slice(todo, func(i, j int) bool { return todo[i].nve < todo[j].nve })
	// Every death is written before any failover, so that a task is not
	// failed over to a standby that dies in the same pass.
	var dead []due
	start := time.Now()
	for _, d := range todo {
		n, written, err := s.transition(ctx, d.nve, d.from, d.to, d.heard, now)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("write nve state", "nve", d.nve, "state", d.to, "err", err)
			}
			continue
		}
		l.mu.Lock()
		t := l.nves[d.nve]
		switch {
		case t == nil:
		case n == nil || n.Replica != s.cfg.Liveness.Replica:
			delete(l.nves, d.nve) // another replica decides for it now
		default:
			// As stored; an NVE heard again meanwhile under the old
			// epoch is fenced at its next heartbeat.
			t.state, t.epoch = n.State, n.Epoch
		}
		l.mu.Unlock()
		if !written {
			continue
		}
		s.log.Info("nve state", "nve", d.nve, "state", d.to, "was", d.from, "epoch", n.Epoch, "last_heard", d.heard.Format(time.RFC3339Nano), "missed", d.missed)
		if d.to == NVESuspect {
			l.suspects.Add(1)
			continue
		}
		l.deaths.Add(1)
		l.lastDetect.Store(int64(d.missed))
		dead = append(dead, d)
	}
	for _, d := range dead {
		moved, suspended, err := s.failoverNVE(ctx, d.nve)
		l.lastCommit.Store(int64(time.Since(start)))
		s.log.Info("nve dead: tasks failed over", "nve", d.nve, "to_standby", moved, "suspended", suspended, "detection", d.missed, "commit", time.Since(start), "err", err)
	}
}

// adoptLiveness starts tracking the NVEs this replica decided for before
// it (re)started, as heard now, and finishes the failover of those it had
// declared dead.
func (s *Service) adoptLiveness(ctx context.Context) {
	nves, err := s.NVEs(ctx)
	if err != nil {
		s.log.Warn("read nve states", "err", err)
		return
	}
	now := s.cfg.Now().UTC()
	var dead []string
	l := &s.live
	l.mu.Lock()
	if l.nves == nil {
		l.nves = make(map[string]*tracked)
	}
	for _, n := range nves {
		lv := n.Liveness
		if lv == nil || lv.Replica != s.cfg.Liveness.Replica {
			continue
		}
		if _, ok := l.nves[n.Name]; !ok {
			l.nves[n.Name] = &tracked{heard: now, state: lv.State, epoch: lv.Epoch}
		}
		if lv.State == NVEDead {
			dead = append(dead, n.Name)
		}
	}
	l.mu.Unlock()
	for _, name := range dead {
		if moved, suspended, err := s.failoverNVE(ctx, name); moved+suspended > 0 || err != nil {
			s.log.Info("dead nve: remaining tasks failed over", "nve", name, "to_standby", moved, "suspended", suspended, "err", err)
		}
	}
}

// DecideLiveness runs one pass of the liveness decider (Run does every
// quarter interval): NVEs not heard for too long become suspect or dead,
// and the tasks of dead ones fail over.
func (s *Service) DecideLiveness(ctx context.Context) { s.decide(ctx) }

// withLastHeard returns n with the last heartbeat this replica heard from
// it (the stored record has the one of its last state change).
func (s *Service) withLastHeard(n NVERecord) NVERecord {
	if n.Liveness == nil {
		return n
	}
	if t, ok := s.LastHeard(n.Name); ok && t.After(n.Liveness.LastHeard) {
		l := *n.Liveness
		l.LastHeard = t
		n.Liveness = &l
	}
	return n
}
