package mapsrv

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ilamesh/ilamesh/ila"
)

// SIRIndexPrefix holds SIRIndex: /ila/v1/sirs/<SIR prefix, 16 hex digits>.
// It makes a SIR prefix unique across domains in the store itself: adding
// a domain creates its prefix's entry in the same transaction, on the
// condition that the entry does not exist (or is stale), so two
// concurrent additions of one prefix cannot both succeed.
const SIRIndexPrefix = Prefix + "sirs/"

// SIRIndexKey returns the SIR index key of p.
func SIRIndexKey(p ila.SIRPrefix) string { return fmt.Sprintf("%s%016x", SIRIndexPrefix, uint64(p)) }

// SIRIndex is the value at SIRIndexKey: the domain that owns the prefix.
type SIRIndex struct {
	Domain string `json:"domain"`
}

// sirIndexCond reads the SIR index entry of d and returns the condition
// and write that claim it for d, or ErrConflict when a live domain other
// than d owns it. doms are the stored domains.
func (s *Service) sirIndexCond(ctx context.Context, d ila.Domain, doms []ila.Domain) (Cond, []Op, error) {
	key := SIRIndexKey(d.SIR)
	kvs, err := s.store.Get(ctx, key)
	if err != nil {
		return Cond{}, nil, s.storeErr(fmt.Errorf("get %s: %w", key, err))
	}
	cond := Cond{Key: key, Revision: kvs[0].Revision}
	if kvs[0].Revision != 0 {
		var x SIRIndex
		if err := decodeStrict(kvs[0].Value, &x); err == nil {
			if x.Domain == d.Name {
				return cond, nil, nil
			}
			for _, o := range doms {
				if o.Name == x.Domain && o.SIR == d.SIR {
					return Cond{}, nil, fmt.Errorf("domain %s: SIR prefix %s already belongs to domain %s: %w", d.Name, d.SIR, o.Name, ErrConflict)
				}
			}
		}
		// Stale (its domain is gone or moved) or malformed: take it over.
	}
	v, err := encode(SIRIndex{Domain: d.Name})
	if err != nil {
		return Cond{}, nil, err
	}
	return cond, []Op{{Key: key, Value: v}}, nil
}

// checkDomainOverlap refuses a domain whose SIR prefix is also the
// locator of an NVE: an NVE's datapath cannot tell the two apart and
// refuses the domain (or the locator).
func (s *Service) checkDomainOverlap(ctx context.Context, d ila.Domain) error {
	nves, err := s.NVEs(ctx)
	if err != nil {
		return err
	}
	for _, n := range nves {
		if slices.Contains(n.Locators, ila.Locator(d.SIR)) {
			return fmt.Errorf("domain %s: SIR prefix %s is also a locator of nve %s (NVEs could not tell them apart): %w", d.Name, d.SIR, n.Name, ErrConflict)
		}
	}
	return nil
}

// checkNVEOverlap refuses locators that are also a domain's SIR prefix.
func checkNVEOverlap(n NVERecord, doms []ila.Domain) error {
	for _, d := range doms {
		if slices.Contains(n.Locators, ila.Locator(d.SIR)) {
			return fmt.Errorf("nve %s: locator %s is also the SIR prefix of domain %s (NVEs could not tell them apart): %w", n.Name, ila.Locator(d.SIR), d.Name, ErrConflict)
		}
	}
	return nil
}

// checkNVEReplace refuses to change the underlay of an NVE, or to remove
// one of its locators, while tasks are registered on it (on that
// locator): their mappings would point at an address that no longer
// reaches them. Move or deregister them first.
func (s *Service) checkNVEReplace(ctx context.Context, old, n NVERecord) error {
	underlay := old.Underlay != n.Underlay
	var removed []ila.Locator
	for _, l := range old.Locators {
		if !slices.Contains(n.Locators, l) {
			removed = append(removed, l)
		}
	}
	if !underlay && len(removed) == 0 {
		return nil
	}
	recs, err := s.Tasks(ctx)
	if err != nil {
		return err
	}
	var hit []string
	n0 := 0
	for _, t := range recs {
		if t.NVE != n.Name || (!underlay && !slices.Contains(removed, t.Locator)) {
			continue
		}
		if n0++; n0 <= 3 {
			hit = append(hit, t.Tenant+"/"+t.Name)
		}
	}
	if n0 == 0 {
		return nil
	}
	if n0 > 3 {
		hit = append(hit, "...")
	}
	what := fmt.Sprintf("underlay %s -> %s", old.Underlay, n.Underlay)
	if !underlay {
		what = fmt.Sprintf("locators %v removed", removed)
	}
	return fmt.Errorf("nve %s: %s while %d task(s) are registered on it (%s): move or deregister them first: %w",
		n.Name, what, n0, strings.Join(hit, ", "), ErrConflict)
}
