package mapsrv

import (
	"context"
	"fmt"

	"github.com/ilamesh/ilamesh/ila"
)

// AddDomain stores a domain. Re-adding an identical domain is a no-op;
// changing an existing one is refused with ErrConflict (its prefix and
// checksum mode are baked into every node's datapath), and so is a SIR
// prefix that another domain owns (checked in the store: SIRIndexKey) or
// that is also an NVE's locator.
func (s *Service) AddDomain(ctx context.Context, d ila.Domain) error {
	if err := CheckName("domain", d.Name); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	kvs, err := s.store.Get(ctx, DomainKey(d.Name))
	if err != nil {
		return s.storeErr(fmt.Errorf("get domain %s: %w", d.Name, err))
	}
	if kvs[0].Revision != 0 {
		old, err := DecodeDomain(kvs[0].Key, kvs[0].Value)
		if err == nil && old == d {
			return nil
		}
		if err == nil {
			return fmt.Errorf("domain %s exists with prefix %s, csum %s: %w", d.Name, old.SIR, old.Csum, ErrConflict)
		}
		s.malformed(kvs[0], err) // overwrite a malformed value
	}
	doms, err := s.Domains(ctx)
	if err != nil {
		return err
	}
	for _, o := range doms {
		if o.SIR == d.SIR && o.Name != d.Name {
			return fmt.Errorf("domain %s: SIR prefix %s already belongs to domain %s: %w", d.Name, d.SIR, o.Name, ErrConflict)
		}
	}
	if err := s.checkDomainOverlap(ctx, d); err != nil {
		return err
	}
	icond, iops, err := s.sirIndexCond(ctx, d, doms)
	if err != nil {
		return err
	}
	v, err := encode(d)
	if err != nil {
		return err
	}
	_, err = s.store.Txn(ctx, []Cond{{Key: kvs[0].Key, Revision: kvs[0].Revision}, icond}, append([]Op{{Key: kvs[0].Key, Value: v}}, iops...))
	if err != nil {
		return s.storeErr(fmt.Errorf("put domain %s: %w", d.Name, err))
	}
	s.cache.invalidate()
	return nil
}

// Domains lists the domains, skipping malformed values.
func (s *Service) Domains(ctx context.Context) ([]ila.Domain, error) {
	kvs, _, err := s.store.List(ctx, DomainPrefix)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("list domains: %w", err))
	}
	var out []ila.Domain
	for _, kv := range kvs {
		d, err := DecodeDomain(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// AddNVE stores an NVE or replaces its record (locators, underlay,
// registration address). A locator of another NVE, a locator pinned to
// two domains with different SIR prefixes (wrapping
// ila.ErrLocatorConflict), a locator that is also a domain's SIR prefix,
// and a new underlay or a removed locator while tasks are registered on
// it are refused with ErrConflict.
func (s *Service) AddNVE(ctx context.Context, n NVERecord) error {
	if err := CheckName("nve", n.Name); err != nil {
		return err
	}
	if len(n.Locators) == 0 {
		return fmt.Errorf("nve %s: at least one locator is required: %w", n.Name, ErrInvalid)
	}
	if !n.Underlay.IsValid() {
		return fmt.Errorf("nve %s: underlay address is required: %w", n.Name, ErrInvalid)
	}
	n.Underlay = n.Underlay.Unmap()
	seen := map[ila.Locator]bool{}
	for _, l := range n.Locators {
		if l == 0 {
			return fmt.Errorf("nve %s: locator 0:0:0:0 is not usable: %w", n.Name, ErrInvalid)
		}
		if seen[l] {
			return fmt.Errorf("nve %s: locator %s listed twice: %w", n.Name, l, ErrInvalid)
		}
		seen[l] = true
	}
	doms, err := s.Domains(ctx)
	if err != nil {
		return err
	}
	if err := checkNVEOverlap(n, doms); err != nil {
		return err
	}
	byName := map[string]ila.Domain{}
	for _, d := range doms {
		byName[d.Name] = d
	}
	for ls, dn := range n.LocatorDomains {
		l, err := ila.ParseLocator(ls)
		if err != nil || !seen[l] {
			return fmt.Errorf("nve %s: locator %q pinned to domain %s is not one of its locators: %w", n.Name, ls, dn, ErrInvalid)
		}
		if _, ok := byName[dn]; !ok {
			return fmt.Errorf("nve %s: locator %s: domain %s: %w", n.Name, l, dn, ErrNotFound)
		}
	}
	nves, err := s.NVEs(ctx)
	if err != nil {
		return err
	}
	var lt ila.LocatorTable
	var cur KV
	for _, o := range nves {
		if o.Name == n.Name {
			continue
		}
		for _, l := range o.Locators {
			if seen[l] {
				return fmt.Errorf("nve %s: locator %s belongs to nve %s: %w", n.Name, l, o.Name, ErrConflict)
			}
			if dn, ok := o.LocatorDomains[l.String()]; ok {
				_ = lt.Claim(l, byName[dn].SIR)
			}
		}
	}
	for ls, dn := range n.LocatorDomains {
		l, _ := ila.ParseLocator(ls)
		if err := lt.Claim(l, byName[dn].SIR); err != nil {
			return fmt.Errorf("nve %s: %w: %w", n.Name, ErrConflict, err)
		}
	}
	kvs, err := s.store.Get(ctx, NVEKey(n.Name))
	if err != nil {
		return s.storeErr(fmt.Errorf("get nve %s: %w", n.Name, err))
	}
	cur = kvs[0]
	if cur.Revision != 0 {
		if old, err := DecodeNVE(cur.Key, cur.Value); err == nil {
			if err := s.checkNVEReplace(ctx, old, n); err != nil {
				return err
			}
			if n.Status == "" {
				n.Status = old.Status
			}
			n.Liveness = old.Liveness // written by heartbeats only
			// Keep the pins of locators the new record still has and does
			// not pin itself: tasks of that domain may use them.
			for ls, dn := range old.LocatorDomains {
				l, err := ila.ParseLocator(ls)
				if err != nil || !seen[l] {
					continue
				}
				if _, ok := n.LocatorDomains[ls]; ok {
					continue
				}
				if n.LocatorDomains == nil {
					n.LocatorDomains = map[string]string{}
				}
				n.LocatorDomains[ls] = dn
			}
		}
	}
	n.Updated = s.cfg.Now().UTC()
	v, err := encode(n)
	if err != nil {
		return err
	}
	if _, err := s.store.Txn(ctx, []Cond{{Key: cur.Key, Revision: cur.Revision}}, []Op{{Key: cur.Key, Value: v}}); err != nil {
		return s.storeErr(fmt.Errorf("put nve %s: %w", n.Name, err))
	}
	s.cache.invalidate()
	return nil
}

// NVEs lists the NVEs, skipping malformed values.
func (s *Service) NVEs(ctx context.Context) ([]NVERecord, error) {
	kvs, _, err := s.store.List(ctx, NVEPrefix)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("list nves: %w", err))
	}
	var out []NVERecord
	for _, kv := range kvs {
		n, err := DecodeNVE(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// NVE returns one NVE.
func (s *Service) NVE(ctx context.Context, name string) (NVERecord, error) {
	n, _, err := s.getNVE(ctx, name)
	return n, err
}

func (s *Service) getNVE(ctx context.Context, name string) (NVERecord, KV, error) {
	if err := CheckName("nve", name); err != nil {
		return NVERecord{}, KV{}, err
	}
	kvs, err := s.store.Get(ctx, NVEKey(name))
	if err != nil {
		return NVERecord{}, KV{}, s.storeErr(fmt.Errorf("get nve %s: %w", name, err))
	}
	if kvs[0].Revision == 0 {
		return NVERecord{}, kvs[0], fmt.Errorf("nve %s: %w: %w", name, ErrNotFound, errNoNVE)
	}
	n, err := DecodeNVE(kvs[0].Key, kvs[0].Value)
	if err != nil {
		s.malformed(kvs[0], err)
		return NVERecord{}, kvs[0], fmt.Errorf("nve %s: %w: %w", name, ErrNotFound, errNoNVE)
	}
	return n, kvs[0], nil
}

func (s *Service) getDomain(ctx context.Context, name string) (ila.Domain, KV, error) {
	if err := CheckName("domain", name); err != nil {
		return ila.Domain{}, KV{}, err
	}
	kvs, err := s.store.Get(ctx, DomainKey(name))
	if err != nil {
		return ila.Domain{}, KV{}, s.storeErr(fmt.Errorf("get domain %s: %w", name, err))
	}
	if kvs[0].Revision == 0 {
		return ila.Domain{}, kvs[0], fmt.Errorf("domain %s: %w: %w", name, ErrNotFound, errNoDomain)
	}
	d, err := DecodeDomain(kvs[0].Key, kvs[0].Value)
	if err != nil {
		s.malformed(kvs[0], err)
		return ila.Domain{}, kvs[0], fmt.Errorf("domain %s: %w: %w", name, ErrNotFound, errNoDomain)
	}
	return d, kvs[0], nil
}
