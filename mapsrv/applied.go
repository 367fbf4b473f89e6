package mapsrv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Applied revisions (docs/etcd-layout.md, "NVE status"). Each ilad sends,
// in its heartbeats, the store revision its datapath has applied (the
// revision of the last watch event or relist it applied). The replica
// that hears the NVE keeps it in memory (AppliedRevisions) and writes it,
// at most once per heartbeat interval and only when it changed, to the
// NVE's status key: /ila/status/nves/<nve>. The status keys live outside
// Prefix (/ila/v1/), which the watches read: writing them does not move a
// watcher's applied revision, so reporting it does not feed itself.

// StatusPrefix holds status that mapsrv writes for operators: it is
// outside Prefix, so no watch delivers it.
const StatusPrefix = "/ila/status/"

// NVEStatusPrefix holds NVEStatus: /ila/status/nves/<nve>.
const NVEStatusPrefix = StatusPrefix + "nves/"

// NVEStatusKey returns the status key of NVE name.
func NVEStatusKey(name string) string { return NVEStatusPrefix + name }

// NVEStatus is what an NVE last reported about its datapath.
type NVEStatus struct {
	NVE string `json:"nve"`
	// Applied is the store revision the NVE's datapath has applied.
	Applied int64 `json:"applied_revision"`
	// Reported is when the heartbeat carrying Applied arrived.
	Reported time.Time `json:"reported"`
	// Replica is the mapsrv replica that heard it.
	Replica string `json:"replica"`
	// API is the URL of the NVE's local API for operators (ilad
	// -api-advertise; ilactl where reaches the NVE there).
	API string `json:"api,omitempty"`
}

// DecodeNVEStatus decodes the value at an NVE status key strictly.
func DecodeNVEStatus(key string, val []byte) (NVEStatus, error) {
	var s NVEStatus
	dec := json.NewDecoder(strings.NewReader(string(val)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return NVEStatus{}, fmt.Errorf("nve status %s: %w: %w", key, ErrMalformed, err)
	}
	if dec.More() {
		return NVEStatus{}, fmt.Errorf("nve status %s: trailing data: %w", key, ErrMalformed)
	}
	if name := strings.TrimPrefix(key, NVEStatusPrefix); name != s.NVE {
		return NVEStatus{}, fmt.Errorf("nve status %s: names nve %q: %w", key, s.NVE, ErrMalformed)
	}
	if s.Applied < 0 {
		return NVEStatus{}, fmt.Errorf("nve status %s: negative revision: %w", key, ErrMalformed)
	}
	return s, nil
}

// noteApplied records the revision nve reported in a heartbeat (0: none)
// and its local API's URL.
func (s *Service) noteApplied(nve string, applied int64, api string, now time.Time) {
	if applied <= 0 {
		return
	}
	l := &s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.nves[nve]; t != nil {
		t.applied, t.appliedAt, t.api = applied, now, api
	}
}

// AppliedRevisions returns the revisions the NVEs this replica hears have
// last reported, by NVE name.
func (s *Service) AppliedRevisions() map[string]NVEStatus {
	l := &s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]NVEStatus, len(l.nves))
	for name, t := range l.nves {
		if t.applied > 0 {
			out[name] = NVEStatus{NVE: name, Applied: t.applied, Reported: t.appliedAt, Replica: s.cfg.Liveness.Replica, API: t.api}
		}
	}
	return out
}

// NotApplied returns, sorted, the NVEs this replica hears (alive or
// suspect) whose last heartbeat said their datapath had not yet applied
// rev: who still maps a task by what it was before a change committed at
// rev. An NVE that reported nothing yet (an older ilad) is listed too. The
// view is a heartbeat old at most, and this replica's: NVEs another
// replica hears are in their status keys (NVEStatuses).
func (s *Service) NotApplied(rev int64) []string {
	l := &s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for name, t := range l.nves {
		if t.state != NVEDead && t.applied < rev {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// maxStatusOps bounds the puts of one status transaction (etcd refuses
// more than --max-txn-ops, default 128).
const maxStatusOps = 64

// WriteNVEStatus writes the status key of every NVE whose reported revision
// changed since the last write (Run does every heartbeat interval). What
// fails is written at the next call.
func (s *Service) WriteNVEStatus(ctx context.Context) error {
	l := &s.live
	type w struct {
		t  *tracked
		st NVEStatus
	}
	var todo []w
	l.mu.Lock()
	for name, t := range l.nves {
		if t.applied > 0 && (t.applied != t.written || t.api != t.writtenAPI) {
			todo = append(todo, w{t, NVEStatus{NVE: name, Applied: t.applied, Reported: t.appliedAt, Replica: s.cfg.Liveness.Replica, API: t.api}})
		}
	}
	l.mu.Unlock()
	sort.Slice(todo, func(i, j int) bool { return todo[i].st.NVE < todo[j].st.NVE })
	for len(todo) > 0 {
		n := min(len(todo), maxStatusOps)
		var ops []Op
		for _, x := range todo[:n] {
			val, err := encode(x.st)
			if err != nil {
				return err
			}
			ops = append(ops, Op{Key: NVEStatusKey(x.st.NVE), Value: val})
		}
		if _, err := s.store.Txn(ctx, nil, ops); err != nil {
			return s.storeErr(fmt.Errorf("write nve status: %w", err))
		}
		l.mu.Lock()
		for _, x := range todo[:n] {
			x.t.written, x.t.writtenAPI = x.st.Applied, x.st.API
		}
		l.mu.Unlock()
		todo = todo[n:]
	}
	return nil
}

// NVEStatuses lists the stored NVE status keys (every replica's).
func (s *Service) NVEStatuses(ctx context.Context) ([]NVEStatus, error) {
	kvs, _, err := s.store.List(ctx, NVEStatusPrefix)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("list nve status: %w", err))
	}
	mem := s.AppliedRevisions()
	var out []NVEStatus
	for _, kv := range kvs {
		st, err := DecodeNVEStatus(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		if m, ok := mem[st.NVE]; ok && m.Reported.After(st.Reported) {
			st = m // heard since the last write
		}
		delete(mem, st.NVE)
		out = append(out, st)
	}
	for _, m := range mem {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NVE < out[j].NVE })
	return out, nil
}

// nveStatuses serves GET /v1/status/nves: []NVEStatus.
func (a *api) nveStatuses(w http.ResponseWriter, r *http.Request) {
	st, err := a.svc.NVEStatuses(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(st))
}
