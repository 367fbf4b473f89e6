package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Expected moves (issue 17, finding 3). A standby registration is the
// claimant NVE's own word: a compromised NVE could register as the standby
// of any task and then claim it. An expectation is the orchestrator's word
// instead: before a live migration it names the destination through the
// management API (admin token), and only then does that NVE's standby
// registration justify its claim (claim.go, Config.StandbyClaims). An
// expectation lasts a bounded time (Config.MaxExpectTTL) and is dropped
// when the task moves (to the expected NVE or anywhere else) or when its
// time is over.

// Expectation is an orchestrator's announcement that a task is about to
// move to NVE (POST /v1/tasks/{tenant}/{name}/expect), stored in the task
// record.
type Expectation struct {
	NVE   string    `json:"nve"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"` // the claim must come before
}

// DefaultExpectTTL is the lifetime of an expectation that gives none.
const DefaultExpectTTL = time.Minute

// DefaultMaxExpectTTL is the default of Config.MaxExpectTTL.
const DefaultMaxExpectTTL = 10 * time.Minute

// StandbyClaims says when a standby registration justifies a claim of the
// task from its standby NVE (Config.StandbyClaims, mapsrv
// --standby-claims).
type StandbyClaims int

const (
	// StandbyClaimsExpected (the default): only while an unexpired
	// expectation names the standby NVE.
	StandbyClaimsExpected StandbyClaims = iota
	// StandbyClaimsTrust: always (the standby registration is trusted:
	// any NVE's key can take any task it first registers a standby for).
	StandbyClaimsTrust
	// StandbyClaimsOff: never; only an operator's move through the API,
	// a failover or a task nothing hosts justify a claim.
	StandbyClaimsOff
)

func (m StandbyClaims) String() string {
	switch m {
	case StandbyClaimsExpected:
		return "expected"
	case StandbyClaimsTrust:
		return "trust"
	case StandbyClaimsOff:
		return "off"
	}
	return fmt.Sprintf("StandbyClaims(%d)", int(m))
}

// ParseStandbyClaims parses "expected", "trust" (or "true") and "off" (or
// "false").
func ParseStandbyClaims(s string) (StandbyClaims, error) {
	switch s {
	case "expected":
		return StandbyClaimsExpected, nil
	case "trust", "true":
		return StandbyClaimsTrust, nil
	case "off", "false":
		return StandbyClaimsOff, nil
	}
	return 0, fmt.Errorf("standby claims %q: want expected, trust or off: %w", s, ErrInvalid)
}

// expects reports whether rec holds an unexpired expectation naming nve.
func expects(rec *TaskRecord, nve string, now time.Time) bool {
	return rec.Expect != nil && rec.Expect.NVE == nve && rec.Expect.Until.After(now)
}

// dropExpect forgets rec's expectation once it is used up: the task has
// moved (it is no longer on from) or its time is over.
func dropExpect(rec *TaskRecord, from string, now time.Time) {
	if e := rec.Expect; e != nil && (rec.NVE != from || !e.Until.After(now)) {
		rec.Expect = nil
	}
}

// ExpectRequest announces that a task, named by tenant/name or by domain
// and identifier, is about to move to NVE (a live migration).
type ExpectRequest struct {
	Tenant, Name string
	Domain       string
	Identifier   ila.Identifier
	NVE          string
	// TTL is how long the expectation lasts; 0: DefaultExpectTTL. At most
	// Config.MaxExpectTTL (an orchestrator renews it for a longer
	// migration by asking again).
	TTL time.Duration
}

// Expect records that the task is expected on NVE for TTL: from then on,
// until the task moves or TTL passes, a claim from that NVE's standby
// registration is justified (claim.go). A new expectation replaces the
// task's previous one. Refusals: ErrInvalid (bad TTL, the NVE already
// hosts the task), ErrNotFound (no such task or NVE).
func (s *Service) Expect(ctx context.Context, e ExpectRequest) (TaskRecord, error) {
	ttl := e.TTL
	switch {
	case ttl == 0:
		ttl = DefaultExpectTTL
	case ttl < 0:
		return TaskRecord{}, fmt.Errorf("expect: ttl %v: negative: %w", ttl, ErrInvalid)
	case ttl > s.cfg.MaxExpectTTL:
		return TaskRecord{}, fmt.Errorf("expect: ttl %v: longer than the maximum %v (ask again to extend it): %w", ttl, s.cfg.MaxExpectTTL, ErrInvalid)
	}
	if e.NVE == "" {
		return TaskRecord{}, fmt.Errorf("expect: the nve the task moves to is required: %w", ErrInvalid)
	}
	for attempt := 0; ; attempt++ {
		rec, err := s.expectOnce(ctx, e, ttl)
		if errors.Is(err, ErrConflict) && attempt < 4 {
			continue // the task changed meanwhile: read it again
		}
		return rec, err
	}
}

func (s *Service) expectOnce(ctx context.Context, e ExpectRequest, ttl time.Duration) (TaskRecord, error) {
	rec, tkv, err := s.resolve(ctx, e.Tenant, e.Name, e.Domain, e.Identifier)
	if err != nil {
		return TaskRecord{}, err
	}
	_, nkv, err := s.getNVE(ctx, e.NVE)
	if err != nil {
		return TaskRecord{}, fmt.Errorf("expect task %s/%s on nve %s: %w", rec.Tenant, rec.Name, e.NVE, err)
	}
	if rec.NVE == e.NVE && rec.PendingNVE == "" {
		return TaskRecord{}, fmt.Errorf("expect task %s/%s (%s) on nve %s: already there: %w", rec.Tenant, rec.Name, rec.Identifier, e.NVE, ErrInvalid)
	}
	now := s.cfg.Now().UTC()
	rec.Expect = &Expectation{NVE: e.NVE, Since: now, Until: now.Add(ttl)}
	var b txnBuilder
	b.cond(tkv)
	b.cond(nkv)
	b.put(tkv.Key, rec)
	if err := s.commit(ctx, &b, "expect task "+tkv.Key); err != nil {
		return TaskRecord{}, err
	}
	s.log.Info("task move expected", "tenant", rec.Tenant, "name", rec.Name, "identifier", rec.Identifier, "on", rec.NVE, "to", e.NVE, "until", rec.Expect.Until)
	return rec, nil
}

// Unexpect drops the task's expectation, if it has one (a migration that
// was called off).
func (s *Service) Unexpect(ctx context.Context, tenant, name, domain string, id ila.Identifier) (TaskRecord, error) {
	for attempt := 0; ; attempt++ {
		rec, tkv, err := s.resolve(ctx, tenant, name, domain, id)
		if err != nil || rec.Expect == nil {
			return rec, err
		}
		rec.Expect = nil
		var b txnBuilder
		b.cond(tkv)
		b.put(tkv.Key, rec)
		err = s.commit(ctx, &b, "drop expectation of "+tkv.Key)
		if errors.Is(err, ErrConflict) && attempt < 4 {
			continue
		}
		return rec, err
	}
}

func (a *api) expect(w http.ResponseWriter, r *http.Request) {
	var b ExpectBody
	if !decode(w, r, &b) {
		return
	}
	rec, err := a.svc.Expect(r.Context(), ExpectRequest{Tenant: r.PathValue("tenant"), Name: r.PathValue("name"), NVE: b.NVE, TTL: time.Duration(b.TTL)})
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *api) unexpect(w http.ResponseWriter, r *http.Request) {
	if _, err := a.svc.Unexpect(r.Context(), r.PathValue("tenant"), r.PathValue("name"), "", 0); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
