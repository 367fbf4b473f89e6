package mapsrv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Refreshes in memory (docs/SCALE.md, "The write rate"; docs/FAILOVER.md,
// "Refreshes are not written"). An NVE refreshes each of its tasks every
// half lifetime. Writing each refresh to the task record (its expiry)
// would send every NVE, dnsbridge and sweeper watching Prefix an event
// that changes nothing they use. So the replica that decides for an NVE
// (the one that hears its heartbeats, liveness.go) keeps the expiry a
// refresh grants in memory instead, when the refresh changes nothing
// else, and its sweeper expires a task whose refreshes stopped. What the
// others need to stay correct:
//
//   - the replica writes its status key (ReplicaStatusKey) every few
//     seconds and holds refreshes in memory only while its last write is
//     at most Hold old; a replica that does not decide for the task's NVE
//     expires it no earlier than the decider's last sign of life + Hold +
//     the task's lifetime: everything the decider may hold in memory has
//     expired by then (a decider that died with its NVE);
//   - a replica that becomes the decider for an NVE (its heartbeats moved
//     here) gives each of its tasks one lifetime (+ Hold) from then, as a
//     restarting replica does for every task (grace.go);
//   - a write of the record for any other reason carries the expiry the
//     refresh granted, and a task that changes NVE gets one lifetime from
//     the change for its new NVE to register it;
//   - the task's expiry as mapsrv's API shows it (Task, Tasks) and as a
//     claim's justification reads it is this replica's effective expiry,
//     not the record's.
//
// Expiry of a task, as this replica computes it:
//
//	max(record expiry, upSince + lifetime, refreshed here + lifetime,
//	    became decider + lifetime + Hold,             (the decider)
//	    decider's last status + its Hold + lifetime)  (any other replica)

// ReplicaStatusPrefix holds ReplicaStatus: /ila/status/replicas/<replica>.
// Outside Prefix: no watch delivers it.
const ReplicaStatusPrefix = StatusPrefix + "replicas/"

// ReplicaStatusKey returns the status key of replica name.
func ReplicaStatusKey(name string) string { return ReplicaStatusPrefix + name }

// ReplicaStatus is a replica's sign of life for the others.
type ReplicaStatus struct {
	Replica string `json:"replica"`
	// Alive is when the replica wrote this value.
	Alive time.Time `json:"alive"`
	// Hold: the replica takes refreshes without writing them only while
	// its last write of this key is at most Hold old.
	Hold ila.Duration `json:"hold"`
}

// DecodeReplicaStatus decodes the value at a replica status key strictly.
func DecodeReplicaStatus(key string, val []byte) (ReplicaStatus, error) {
	var s ReplicaStatus
	dec := json.NewDecoder(bytes.NewReader(val))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return ReplicaStatus{}, fmt.Errorf("replica status %s: %w: %w", key, ErrMalformed, err)
	}
	if dec.More() {
		return ReplicaStatus{}, fmt.Errorf("replica status %s: trailing data: %w", key, ErrMalformed)
	}
	if name := strings.TrimPrefix(key, ReplicaStatusPrefix); name != s.Replica {
		return ReplicaStatus{}, fmt.Errorf("replica status %s: names replica %q: %w", key, s.Replica, ErrMalformed)
	}
	if s.Hold < 0 || s.Alive.IsZero() {
		return ReplicaStatus{}, fmt.Errorf("replica status %s: negative hold or no time: %w", key, ErrMalformed)
	}
	return s, nil
}

// replicaStatusEvery is how often a replica writes its status key;
// replicaHold how old its last write may be while it holds refreshes in
// memory.
const (
	replicaStatusEvery = 5 * time.Second
	replicaHold        = 3 * replicaStatusEvery
)

// renewals are the refreshes this replica took without writing them.
type renewals struct {
	mu      sync.Mutex
	tasks   map[string]renewal   // task key -> the last refresh's grant
	adopted map[string]time.Time // nve -> when this replica began deciding for it
	alive   time.Time            // the last status this replica wrote (Now)
	written time.Time            // when (wall clock), for the write period
}

type renewal struct {
	nve    string
	expiry time.Time
}

// WriteReplicaStatus writes this replica's status key (the liveness loop
// does every few seconds). Until it has, and while its last write is
// recent, no refresh is held in memory.
func (s *Service) WriteReplicaStatus(ctx context.Context) error {
	now := s.cfg.Now().UTC()
	st := ReplicaStatus{Replica: s.cfg.Liveness.Replica, Alive: now, Hold: ila.Duration(replicaHold)}
	val, err := encode(st)
	if err != nil {
		return err
	}
	if _, err := s.store.Txn(ctx, nil, []Op{{Key: ReplicaStatusKey(st.Replica), Value: val}}); err != nil {
		return s.storeErr(fmt.Errorf("write replica status: %w", err))
	}
	s.renew.mu.Lock()
	if now.After(s.renew.alive) {
		s.renew.alive = now
	}
	s.renew.written = time.Now()
	s.renew.mu.Unlock()
	return nil
}

// replicaStatusDue reports whether the status key is due for a write.
func (s *Service) replicaStatusDue() bool {
	s.renew.mu.Lock()
	defer s.renew.mu.Unlock()
	return time.Since(s.renew.written) >= replicaStatusEvery
}

// adopt records that this replica decides for nve from now on.
func (s *Service) adopt(nve string, now time.Time) {
	s.renew.mu.Lock()
	if s.renew.adopted == nil {
		s.renew.adopted = make(map[string]time.Time)
	}
	s.renew.adopted[nve] = now
	s.renew.mu.Unlock()
}

// holdsRefreshes reports whether a refresh from nve at now may be held
// in memory: liveness is on, this replica decides for nve (it heard its
// last heartbeats and the NVE record names it) and its status key is
// recent.
func (s *Service) holdsRefreshes(n NVERecord, now time.Time) bool {
	lc := s.cfg.Liveness
	if !lc.enabled() || n.Liveness == nil || n.Liveness.Replica != lc.Replica || n.Liveness.State != NVEAlive {
		return false
	}
	s.renew.mu.Lock()
	alive := s.renew.alive
	s.renew.mu.Unlock()
	if alive.IsZero() || now.Sub(alive) > replicaHold {
		return false
	}
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	t := s.live.nves[n.Name]
	return t != nil && t.state == NVEAlive && now.Sub(t.heard) < time.Duration(lc.SuspectAfter)*lc.Interval
}

// renewed records a refresh held in memory.
func (s *Service) renewed(key, nve string, expiry time.Time) {
	s.renew.mu.Lock()
	if s.renew.tasks == nil {
		s.renew.tasks = make(map[string]renewal)
	}
	s.renew.tasks[key] = renewal{nve: nve, expiry: expiry}
	s.renew.mu.Unlock()
	s.c.refreshesHeld.Add(1)
}

// forget drops the refresh held for a task that is gone.
func (s *Service) forget(key string) {
	s.renew.mu.Lock()
	delete(s.renew.tasks, key)
	s.renew.mu.Unlock()
}

// forgetBefore drops refreshes held that expired before t.
func (s *Service) forgetBefore(t time.Time) {
	s.renew.mu.Lock()
	for k, r := range s.renew.tasks {
		if r.expiry.Before(t) {
			delete(s.renew.tasks, k)
		}
	}
	s.renew.mu.Unlock()
}

// heldExpiry returns the expiry a refresh held here granted rec (zero:
// none, or one from another NVE than rec's).
func (s *Service) heldExpiry(rec TaskRecord) time.Time {
	s.renew.mu.Lock()
	defer s.renew.mu.Unlock()
	r, ok := s.renew.tasks[TaskKey(rec.Domain, rec.Identifier)]
	if !ok || r.nve != rec.NVE {
		return time.Time{}
	}
	return r.expiry
}

// expiryView looks up, once per pass, what the expiry of tasks decided
// elsewhere depends on: NVE records and the replicas' status keys.
type expiryView struct {
	s        *Service
	cached   bool // NVE records from the registration path's cache (views only)
	nves     map[string]nveAt
	replicas map[string]ReplicaStatus
}

type nveAt struct {
	rec NVERecord
	kv  KV
	err error
}

func (s *Service) newExpiryView() *expiryView { return &expiryView{s: s} }

func (v *expiryView) nve(ctx context.Context, name string) nveAt {
	if n, ok := v.nves[name]; ok {
		return n
	}
	var n nveAt
	if v.cached {
		n.rec, n.kv, n.err = v.s.cachedNVE(ctx, name)
	} else {
		n.rec, n.kv, n.err = v.s.getNVE(ctx, name)
	}
	if v.nves == nil {
		v.nves = make(map[string]nveAt)
	}
	v.nves[name] = n
	return n
}

func (v *expiryView) replica(ctx context.Context, name string) (ReplicaStatus, bool, error) {
	if v.replicas == nil {
		kvs, _, err := v.s.store.List(ctx, ReplicaStatusPrefix)
		if err != nil {
			return ReplicaStatus{}, false, v.s.storeErr(fmt.Errorf("list replica status: %w", err))
		}
		v.replicas = make(map[string]ReplicaStatus, len(kvs))
		for _, kv := range kvs {
			st, err := DecodeReplicaStatus(kv.Key, kv.Value)
			if err != nil {
				v.s.malformed(kv, err)
				continue
			}
			v.replicas[st.Replica] = st
		}
	}
	st, ok := v.replicas[name]
	return st, ok, nil
}

// localExpiry is rec's expiry from what this replica knows without
// reading the store: the record, the grace and the refreshes held here.
func (s *Service) localExpiry(rec TaskRecord) (time.Time, bool) {
	exp, ok := expiresAt(rec.Task, s.up.get())
	if !ok {
		return exp, false
	}
	if h := s.heldExpiry(rec); h.After(exp) {
		exp = h
	}
	return exp, true
}

// effectiveExpiry is rec's expiry under the rule above, and the NVE
// record (kv) the decision relied on (Revision 0 with no error: absent).
// Reads go through v (nil: a view of its own).
func (s *Service) effectiveExpiry(ctx context.Context, rec TaskRecord, v *expiryView) (time.Time, bool, KV, error) {
	exp, ok := s.localExpiry(rec)
	if !ok {
		return exp, false, KV{}, nil
	}
	if v == nil {
		v = s.newExpiryView()
	}
	n := v.nve(ctx, rec.NVE)
	switch {
	case errors.Is(n.err, errNoNVE): // absent or malformed: nobody decides
		return exp, true, n.kv, nil
	case errors.Is(n.err, ErrInvalid):
		return exp, true, KV{}, nil
	case n.err != nil:
		return exp, true, KV{}, n.err
	}
	lt := time.Duration(rec.Lifetime)
	l := n.rec.Liveness
	switch {
	case l == nil || l.Replica == "":
	case l.Replica == s.cfg.Liveness.Replica:
		s.renew.mu.Lock()
		at := s.renew.adopted[rec.NVE]
		s.renew.mu.Unlock()
		if g := at.Add(lt + replicaHold); !at.IsZero() && g.After(exp) {
			exp = g
		}
	default:
		st, found, err := v.replica(ctx, l.Replica)
		if err != nil {
			return exp, true, n.kv, err
		}
		if g := st.Alive.Add(time.Duration(st.Hold) + lt); found && g.After(exp) {
			exp = g
		}
	}
	return exp, true, n.kv, nil
}

// withExpiry returns recs with the expiry this replica would apply
// (what the API shows: the record's may be older than a refresh held in
// memory).
func (s *Service) withExpiry(ctx context.Context, recs []TaskRecord) ([]TaskRecord, error) {
	v := s.newExpiryView()
	v.cached = true // a view: NVE records up to cacheTTL old will do
	for i := range recs {
		exp, ok, _, err := s.effectiveExpiry(ctx, recs[i], v)
		if err != nil {
			return nil, err
		}
		if ok {
			recs[i].Expiry = exp
		}
	}
	return recs, nil
}

// unchangedBut reports whether a and b encode the same but for their
// expiry and update time: a refresh that changes nothing anyone uses.
func unchangedBut(a, b TaskRecord) bool {
	a.Expiry, a.Updated = time.Time{}, time.Time{}
	b.Expiry, b.Updated = time.Time{}, time.Time{}
	ea, err1 := encode(a)
	eb, err2 := encode(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

// fold brings rec's expiry up to a refresh held here, before rec is
// written for another reason.
func (s *Service) fold(rec *TaskRecord) {
	if h := s.heldExpiry(*rec); !rec.Expiry.IsZero() && h.After(rec.Expiry) {
		rec.Expiry = h
	}
}
