package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Registration is a claim of a task by an NVE, from the registration
// protocol or the management API.
type Registration struct {
	NVE string
	// Locator is the NVE's locator the task is reachable at; 0 picks the
	// NVE's locator for the domain.
	Locator ila.Locator
	// Domain; empty: the domain whose SIR prefix holds SIR (or the only
	// domain, for IPv4 tenants).
	Domain string
	Tenant string // default "default" when Name is set
	Name   string // optional: indexed by tenant/name when set
	// SIR is the task's SIR address. IPv4 tenants give IPv4 and VNI
	// instead: the identifier is then ila.NewVNIPv4(VNI, IPv4).
	SIR  netip.Addr
	IPv4 netip.Addr
	VNI  uint32
	MAC  ila.MAC
	// Lifetime requested; 0 = does not expire. Granted lifetimes are
	// capped by Config.MaxLifetime.
	Lifetime time.Duration
	// Mode of the move when the claim moves the task from another NVE:
	// hot (none: hot), warm or cold.
	Mode ila.MoveMode
	// Standby: the NVE registers as the task's standby (failover.go).
	// Epoch: the NVE's epoch (0: not given), fenced if stale.
	Standby bool
	Epoch   uint32
	// NoRename refuses (ErrConflict) a registration whose addresses are
	// those of a stored task with another tenant/name, instead of
	// renaming that task (the management API: POST /v1/tasks must not
	// rename or move a task it does not name).
	NoRename bool
}

// identify resolves the domain, identifier and SIR address of r.
func (s *Service) identify(ctx context.Context, r *Registration) (ila.Domain, KV, ila.Identifier, error) {
	var d ila.Domain
	var dkv KV
	var err error
	switch {
	case r.Domain != "":
		if d, dkv, err = s.cachedDomain(ctx, r.Domain); err != nil {
			return d, dkv, 0, err
		}
	default:
		doms, err := s.cachedDomains(ctx)
		if err != nil {
			return d, dkv, 0, err
		}
		found := false
		switch {
		case r.SIR.IsValid():
			d, found = domainOf(doms, ila.SIRPrefixOf(r.SIR))
		case len(doms) == 1:
			d, found = doms[0], true
		}
		if !found {
			if r.SIR.IsValid() {
				return d, dkv, 0, fmt.Errorf("sir %s: no domain has this prefix: %w: %w", r.SIR, ErrNotFound, errNoDomain)
			}
			return d, dkv, 0, fmt.Errorf("task %s: domain is required (%d domains): %w", r.Name, len(doms), ErrInvalid)
		}
		if d, dkv, err = s.cachedDomain(ctx, d.Name); err != nil {
			return d, dkv, 0, err
		}
	}
	r.Domain = d.Name
	var id ila.Identifier
	if r.IPv4.IsValid() {
		r.IPv4 = r.IPv4.Unmap()
		if id, err = ila.NewVNIPv4(r.VNI, r.IPv4); err != nil {
			return d, dkv, 0, fmt.Errorf("task %s: %w: %w", r.Name, ErrInvalid, err)
		}
		sir := d.SIR.Addr(id)
		if r.SIR.IsValid() && r.SIR != sir {
			return d, dkv, 0, fmt.Errorf("task %s: sir %s does not match the vn-ipv4 identifier of %s in vni %d (%s): %w", r.Name, r.SIR, r.IPv4, r.VNI, sir, ErrInvalid)
		}
		r.SIR = sir
	} else {
		if !r.SIR.IsValid() {
			return d, dkv, 0, fmt.Errorf("task %s: a SIR address or an IPv4 address with a VNI is required: %w", r.Name, ErrInvalid)
		}
		r.SIR = r.SIR.WithZone("")
		if !d.SIR.Contains(r.SIR) {
			return d, dkv, 0, fmt.Errorf("task %s: sir %s is not in domain %s (%s): %w", r.Name, r.SIR, d.Name, d.SIR, ErrInvalid)
		}
		id = ila.IdentifierOf(r.SIR)
	}
	if err := d.CheckIdentifier(id); err != nil {
		return d, dkv, 0, fmt.Errorf("task %s: identifier %s in domain %s: %w: %w", r.Name, id, d.Name, ErrInvalid, err)
	}
	return d, dkv, id, nil
}

// pickLocator returns the NVE's locator for the task and, if that locator
// was not yet pinned to the domain, the NVE record to write with the pin.
func pickLocator(n NVERecord, want ila.Locator, domain string) (ila.Locator, *NVERecord, error) {
	loc := want
	if loc == 0 {
		var ok bool
		if loc, ok = n.LocatorFor(domain); !ok {
			return 0, nil, fmt.Errorf("nve %s has no locator for domain %s: %w", n.Name, domain, ErrForbidden)
		}
	} else if !n.Owns(loc, domain) {
		if other, pinned := n.pin(loc); pinned && slices.Contains(n.Locators, loc) {
			return 0, nil, fmt.Errorf("locator %s of nve %s serves domain %s, not %s: %w: %w", loc, n.Name, other, domain, ErrForbidden, ila.ErrLocatorConflict)
		}
		return 0, nil, fmt.Errorf("locator %s is not a locator of nve %s: %w", loc, n.Name, ErrForbidden)
	}
	if _, pinned := n.pin(loc); pinned {
		return loc, nil, nil
	}
	pin := n
	pin.LocatorDomains = make(map[string]string, len(n.LocatorDomains)+1)
	for k, v := range n.LocatorDomains {
		pin.LocatorDomains[k] = v
	}
	pin.LocatorDomains[loc.String()] = domain
	return loc, &pin, nil
}

// taskRead is what readTask found: the task key and the name and MAC
// index keys of a registration, and the stored task if there is one.
type taskRead struct {
	task, name, mac KV
	nameX, macX     indexRead // name and mac decoded
	rec             TaskRecord
	exists          bool
}

// indexRead is an index entry decoded once per registration.
type indexRead struct {
	x   Index
	err error // decoding error (a malformed value)
}

func readIndex(kv KV, cached any) indexRead {
	if kv.Revision == 0 {
		return indexRead{}
	}
	if x, ok := cached.(Index); ok {
		return indexRead{x: x}
	}
	x, err := DecodeIndex(kv.Key, kv.Value)
	return indexRead{x: x, err: err}
}

func (s *Service) readTask(ctx context.Context, domain string, id ila.Identifier, tenant, name string, mac ila.MAC, optimistic bool) (taskRead, error) {
	keys := []string{TaskKey(domain, id), "", ""}
	if name != "" {
		keys[1] = NameKey(tenant, name)
	}
	if !mac.IsZero() {
		keys[2] = MACKey(mac)
	}
	get := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "" })
	var kvs []KV
	var vals []any // decoded values of kvs, when known
	if optimistic {
		kvs, vals = s.kvs.get(get...)
	} else {
		var err error
		if kvs, err = s.store.Get(ctx, get...); err != nil {
			return taskRead{}, s.storeErr(fmt.Errorf("get task %s/%s: %w", domain, id, err))
		}
	}
	val := func(i int) any {
		if vals == nil {
			return nil
		}
		return vals[i]
	}
	var tr taskRead
	i := 0
	tr.task = kvs[i]
	i++
	if keys[1] != "" {
		tr.name = kvs[i]
		tr.nameX = readIndex(tr.name, val(i))
		i++
	}
	if keys[2] != "" {
		tr.mac = kvs[i]
		tr.macX = readIndex(tr.mac, val(i))
	}
	if rec, ok := val(0).(TaskRecord); ok && tr.task.Revision != 0 {
		// Written by this Service at this revision: no need to decode.
		tr.rec, tr.exists = cloneTask(rec), true
	} else if tr.task.Revision != 0 {
		rec, err := DecodeTask(tr.task.Key, tr.task.Value)
		if err != nil {
			s.malformed(tr.task, err) // treated as absent; a write replaces it
		} else {
			tr.rec, tr.exists = rec, true
		}
	}
	return tr, nil
}

// indexFree reports whether index entry kv is absent, stale or already
// points at (domain, id). A stale entry points at a task that no longer
// exists or no longer carries that name/MAC.
func (s *Service) indexFree(ctx context.Context, kv KV, ir indexRead, domain string, id ila.Identifier) (bool, error) {
	if kv.Revision == 0 {
		return true, nil
	}
	x := ir.x
	if ir.err != nil {
		s.malformed(kv, ir.err)
		return true, nil
	}
	if x.Domain == domain && x.Identifier == id {
		return true, nil
	}
	kvs, err := s.store.Get(ctx, TaskKey(x.Domain, x.Identifier))
	if err != nil {
		return false, s.storeErr(fmt.Errorf("get task %s/%s: %w", x.Domain, x.Identifier, err))
	}
	if kvs[0].Revision == 0 {
		return true, nil
	}
	other, err := DecodeTask(kvs[0].Key, kvs[0].Value)
	if err != nil {
		return true, nil
	}
	switch {
	case strings.HasPrefix(kv.Key, NamePrefix):
		return NameKey(other.Tenant, other.Name) != kv.Key, nil
	case strings.HasPrefix(kv.Key, MACPrefix):
		return other.MAC.IsZero() || MACKey(other.MAC) != kv.Key, nil
	}
	return false, nil
}

// Register records a claim of a task by an NVE: a new task, a
// re-registration (extends the lifetime, updates name/MAC), the completion
// of a warm or cold move at its destination, or a move from another NVE.
// Concurrent writers are resolved by retrying on conflicts; a claim that
// is a move follows the move rules (flap damping, duplicate state).
func (s *Service) Register(ctx context.Context, r Registration) (TaskRecord, error) {
	if r.Standby {
		return s.registerStandby(ctx, r)
	}
	var rec TaskRecord
	var err error
	for attempt := 0; attempt < 6; attempt++ {
		// The first attempt trusts what this Service wrote (kvCache); the
		// others read the store.
		rec, err = s.register(ctx, r, attempt == 0)
		var final finalError
		if err == nil || errors.Is(err, errTaken) || errors.As(err, &final) || ctx.Err() != nil {
			if attempt == 0 && errors.Is(err, ErrUnjustified) {
				continue // a standby another replica just recorded? read again
			}
			break
		}
		conflict := errors.Is(err, ErrConflict)
		if conflict && attempt == 0 {
			continue // the optimistic guess was wrong; read and retry
		}
		// A conflict, or a refusal that stale cached domain or NVE
		// records may have caused: drop the cache and try again (only
		// conflicts more than once).
		s.cache.invalidate()
		if !conflict && attempt > 1 {
			break
		}
	}
	if errors.Is(err, ErrUnjustified) {
		s.c.claimsUnjustified.Add(1)
	}
	switch {
	case err == nil:
		s.c.regAccepted.Add(1)
	case errors.Is(err, ErrConflict) || errors.Is(err, ErrDuplicate):
		s.c.regConflict.Add(1)
	case errors.Is(err, ErrInvalid) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound):
		s.c.regRejected.Add(1)
	default:
		s.c.regError.Add(1)
	}
	return rec, err
}

// errTaken marks a conflict that a retry cannot resolve (name or MAC used
// by another task).
var errTaken = errors.New("taken by another task")

// finalError marks a refusal that a retry against fresher state cannot
// change; its text is the wrapped error's.
type finalError struct{ error }

func (e finalError) Unwrap() error { return e.error }

func (s *Service) register(ctx context.Context, r Registration, optimistic bool) (TaskRecord, error) {
	if r.Name != "" {
		if r.Tenant == "" {
			r.Tenant = "default"
		}
		if err := CheckName("tenant", r.Tenant); err != nil {
			return TaskRecord{}, err
		}
		if err := CheckName("task", r.Name); err != nil {
			return TaskRecord{}, err
		}
	}
	if r.Lifetime < 0 {
		return TaskRecord{}, fmt.Errorf("task %s: negative lifetime: %w", r.Name, ErrInvalid)
	}
	if _, err := checkMode(r.Mode); err != nil {
		return TaskRecord{}, err
	}
	nve, nkv, err := s.cachedNVE(ctx, r.NVE)
	if err != nil {
		return TaskRecord{}, err
	}
	if err := checkFence(nve, r.Epoch); err != nil {
		return TaskRecord{}, err
	}
	dom, dkv, id, err := s.identify(ctx, &r)
	if err != nil {
		return TaskRecord{}, err
	}
	loc, pin, err := pickLocator(nve, r.Locator, dom.Name)
	if err != nil {
		return TaskRecord{}, err
	}
	tr, err := s.readTask(ctx, dom.Name, id, r.Tenant, r.Name, r.MAC, optimistic)
	if err != nil {
		return TaskRecord{}, err
	}
	if r.NoRename && tr.exists && r.Name != "" && tr.rec.Name != "" && (tr.rec.Name != r.Name || tr.rec.Tenant != r.Tenant) {
		return TaskRecord{}, finalError{fmt.Errorf("task %s/%s: sir %s is task %s/%s's (on nve %s): deregister it first, or move it by its name: %w: %w",
			r.Tenant, r.Name, r.SIR, tr.rec.Tenant, tr.rec.Name, tr.rec.NVE, ErrConflict, errTaken)}
	}
	if r.Name == "" && tr.exists {
		// A registration without a name (e.g. from ND) keeps the stored one.
		r.Name, r.Tenant = tr.rec.Name, tr.rec.Tenant
		if r.Name != "" {
			if tr, err = s.readTask(ctx, dom.Name, id, r.Tenant, r.Name, r.MAC, optimistic); err != nil {
				return TaskRecord{}, err
			}
		}
	}
	if r.MAC.IsZero() && tr.exists && !tr.rec.MAC.IsZero() {
		r.MAC = tr.rec.MAC
		if tr, err = s.readTask(ctx, dom.Name, id, r.Tenant, r.Name, r.MAC, optimistic); err != nil {
			return TaskRecord{}, err
		}
	}
	st := claimState{NameFree: true, MACFree: true}
	if tr.exists {
		st.Task = &tr.rec
	}
	if r.Name != "" {
		if st.NameFree, err = s.indexFree(ctx, tr.name, tr.nameX, dom.Name, id); err != nil {
			return TaskRecord{}, err
		}
	}
	if st.NameFree && !r.MAC.IsZero() {
		if st.MACFree, err = s.indexFree(ctx, tr.mac, tr.macX, dom.Name, id); err != nil {
			return TaskRecord{}, err
		}
	}
	now := s.cfg.Now().UTC()
	st.StandbyClaims = s.cfg.StandbyClaims
	var okv KV // the hosting NVE's record, when the claim relies on its death
	if t := st.Task; t != nil && t.NVE != nve.Name && t.PendingNVE != nve.Name && standbyJustifies(nve.Name, st, now) == "" {
		// A claim from another NVE: is the one hosting the task still there?
		own, kv, err := s.getNVE(ctx, t.NVE)
		switch {
		case errors.Is(err, errNoNVE):
			st.OwnerGone, okv = true, kv
		case err != nil:
			return TaskRecord{}, err
		case own.Liveness != nil && own.Liveness.State == NVEDead:
			st.OwnerGone, okv = true, kv
		}
		if !st.OwnerGone && !t.Expiry.IsZero() {
			// The record's expiry may predate refreshes held in memory
			// (renew.go): judge "its lifetime is over" by the effective one.
			exp, _, _, err := s.effectiveExpiry(ctx, *t, nil)
			if err != nil {
				return TaskRecord{}, err
			}
			view := *t
			view.Expiry = exp
			st.Task = &view
		}
	}
	claim := decideClaim(r, nve.Name, id, st, now)
	if claim.Kind == claimRefuse {
		return TaskRecord{}, claim.Err
	}

	var b txnBuilder
	b.cond(tr.task)
	b.cond(nkv)
	b.cond(dkv)
	if st.OwnerGone && claim.Kind == claimMove {
		b.cond(okv) // the decision holds only while that NVE is dead or gone
	}
	if pin != nil {
		pin.Updated = now
		b.put(nkv.Key, pin)
	}
	rec := tr.rec
	var notify []Notification
	var outcome moveOutcome
	switch claim.Kind {
	case claimNew:
		rec = TaskRecord{Task: ila.Task{Version: 1, State: ila.StateActive}}
	case claimRefresh:
		// A suspension without a pending move ends; a move away from
		// here that is pending keeps the task suspended.
		if rec.State == ila.StateSuspended && rec.PendingNVE == "" {
			rec.State = ila.StateActive
			rec.Version++
		}
		if rec.Locator != loc {
			rec.Locator = loc
			rec.Version++
		}
	case claimComplete:
		rec.MovedBy = claim.By
		notify = s.switchLocator(&rec, nve.Name, loc, now, rec.PendingMode != ila.MoveCold)
		rec.Version++
		rec.State = ila.StateActive
		rec.PendingNVE, rec.PendingMode = "", ila.MoveNone
	case claimMove:
		if notify, outcome, err = s.moveRecord(&rec, nve.Name, loc, claim.Mode, now); err != nil {
			return TaskRecord{}, err // refused: nothing written
		}
		rec.MovedBy = claim.By
		if rec.PendingNVE == nve.Name {
			// A warm or cold claim: the claimant is the destination and
			// the task has registered there, so the move is complete now
			// (the task is where it registers; leaving it suspended would
			// wait for the next re-registration).
			notify = s.switchLocator(&rec, nve.Name, loc, now, rec.PendingMode != ila.MoveCold)
			rec.State = ila.StateActive
			rec.PendingNVE, rec.PendingMode = "", ila.MoveNone
		}
	}
	dropStandbyAt(&rec)
	dropExpect(&rec, tr.rec.NVE, now)
	// Index updates: drop old entries that no longer apply.
	if tr.exists && tr.rec.Name != "" && NameKey(tr.rec.Tenant, tr.rec.Name) != NameKey(r.Tenant, r.Name) {
		b.del(NameKey(tr.rec.Tenant, tr.rec.Name))
	}
	if tr.exists && !tr.rec.MAC.IsZero() && tr.rec.MAC != r.MAC {
		b.del(MACKey(tr.rec.MAC))
	}
	rec.Domain, rec.Identifier, rec.SIR = dom.Name, id, r.SIR
	rec.Name, rec.Tenant = r.Name, r.Tenant
	rec.VNI, rec.IPv4, rec.MAC = r.VNI, r.IPv4, r.MAC
	if !r.IPv4.IsValid() {
		rec.VNI = 0
	}
	if !tr.exists {
		rec.NVE, rec.Locator = nve.Name, loc
	}
	lt := r.Lifetime
	if lt > s.cfg.MaxLifetime {
		lt = s.cfg.MaxLifetime
	}
	rec.Lifetime = ila.Duration(lt)
	rec.Expiry = time.Time{}
	if lt > 0 {
		rec.Expiry = now.Add(lt)
	}
	rec.Previous = prunePrevious(rec.Previous, now)
	rec.Updated = now
	clearPending(&rec)
	b.put(tr.task.Key, rec)
	// Index entries are written when they do not already point here
	// (a refresh then writes the task record alone).
	if r.Name != "" {
		b.cond(tr.name)
		if !pointsAt(tr.name, tr.nameX, dom.Name, id) {
			b.put(NameKey(r.Tenant, r.Name), Index{Domain: dom.Name, Identifier: id})
		}
	}
	if !r.MAC.IsZero() {
		b.cond(tr.mac)
		if !pointsAt(tr.mac, tr.macX, dom.Name, id) {
			b.put(MACKey(r.MAC), Index{Domain: dom.Name, Identifier: id})
		}
	}
	if claim.Kind == claimRefresh && tr.exists && len(b.ops) == 1 && unchangedBut(rec, tr.rec) && s.holdsRefreshes(nve, now) {
		// A refresh that changes nothing but the expiry: held in memory,
		// not written (renew.go), once the store confirms what it read.
		if err := s.confirmUnchanged(ctx, &b); err != nil {
			return TaskRecord{}, err
		}
		if !rec.Expiry.IsZero() {
			s.renewed(tr.task.Key, nve.Name, rec.Expiry)
		}
		rec.Updated = tr.rec.Updated
		return rec, nil
	}
	if err := s.commit(ctx, &b, "register task "+tr.task.Key); err != nil {
		return TaskRecord{}, err
	}
	s.countMove(outcome)
	if claim.Kind == claimMove {
		s.log.Info("task moved by a claim", "tenant", rec.Tenant, "name", rec.Name, "identifier", id, "from", tr.rec.NVE, "to", rec.NVE, "by", claim.By, "mode", claim.Mode, "version", rec.Version)
	}
	s.enqueue(ctx, notify, rec.Task)
	return rec, nil
}

// pointsAt reports whether index entry kv exists and names (domain, id).
func pointsAt(kv KV, ir indexRead, domain string, id ila.Identifier) bool {
	return kv.Revision != 0 && ir.err == nil && ir.x.Domain == domain && ir.x.Identifier == id
}

// confirmUnchanged reads the keys b compares (the task, its NVE, domain
// and index entries) at one revision: ErrConflict (the keys forgotten
// from the caches, for a retry with fresh reads) if one changed since the
// registration read it.
func (s *Service) confirmUnchanged(ctx context.Context, b *txnBuilder) error {
	conds := b.conds
	keys := make([]string, len(conds))
	for i, c := range conds {
		keys[i] = c.Key
	}
	kvs, err := s.store.Get(ctx, keys...)
	if err != nil {
		return s.storeErr(fmt.Errorf("confirm refresh of %s: %w", keys[0], err))
	}
	for i, kv := range kvs {
		if kv.Revision != conds[i].Revision {
			s.kvs.conflicted(conds)
			s.cache.invalidate()
			return fmt.Errorf("refresh of %s: %s changed: %w", keys[0], kv.Key, ErrConflict)
		}
	}
	return nil
}
