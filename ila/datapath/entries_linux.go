package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
)

func checkMapping(what string, m ila.Mapping) error {
	if m.SIR == 0 {
		return fmt.Errorf("%s %s: SIR prefix ::/64 is not usable", what, m.SIRAddr())
	}
	if m.Locator == 0 {
		return fmt.Errorf("%s %s: locator 0:0:0:0 is not usable", what, m.SIRAddr())
	}
	if uint64(m.Locator) == uint64(m.SIR) {
		return fmt.Errorf("%s %s: locator equals the SIR prefix", what, m.SIRAddr())
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ensureDomain registers m's SIR prefix with m's checksum mode if the node
// does not know it yet. Callers hold d.mu.
func (d *Datapath) ensureDomain(m ila.Mapping) error {
	if _, ok := d.domains[ne(uint64(m.SIR))]; ok {
		return nil
	}
	return d.addDomain(ila.Domain{Name: m.SIR.String(), SIR: m.SIR, Csum: m.Csum})
}

// UpsertMapping writes identifier -> locator. An unknown SIR prefix is
// registered as a domain with the mapping's checksum mode.
func (d *Datapath) UpsertMapping(m ila.Mapping) error {
	if err := checkMapping("mapping", m); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.batch(func() error { return d.upsertMapping(m) })
}

func (d *Datapath) upsertMapping(m ila.Mapping) error {
	if err := d.ensureDomain(m); err != nil {
		return err
	}
	k := key(m.SIR, m.Identifier)
	var old xlatIlaMapVal
	had := d.objs.IlaMappings.Lookup(&k, &old) == nil
	oldLoc := ila.Locator(he(old.Loc))
	v := xlatIlaMapVal{Loc: ne(uint64(m.Locator)), Csum: uint8(m.Csum), Tenant: uint32(m.Tenant)}
	if _, ok := d.mylocs[ne(uint64(m.Locator))]; ok {
		v.Flags |= uint8(xlatIlaMapFlagILA_MAP_F_OWN_LOC)
	}
	if had && old == v {
		return nil // a refresh: nothing to write, no cache to drop
	}
	if !had || oldLoc != m.Locator {
		if err := d.refLocator(m.Locator, m.SIR, m.Csum); err != nil {
			return fmt.Errorf("mapping %s: %w", m.SIRAddr(), err)
		}
	}
	if err := d.update(d.objs.IlaMappings, "mapping "+m.SIRAddr().String(), &k, &v); err != nil {
		if !had || oldLoc != m.Locator {
			_ = d.unrefLocator(m.Locator)
		}
		return err
	}
	if had && oldLoc != m.Locator {
		return d.unrefLocator(oldLoc)
	}
	return nil
}

// DeleteMapping removes a mapping; deleting an absent one is not an error.
func (d *Datapath) DeleteMapping(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(sir, id)
	var old xlatIlaMapVal
	if d.objs.IlaMappings.Lookup(&k, &old) != nil {
		return nil
	}
	return d.batch(func() error {
		if err := d.del(d.objs.IlaMappings, "mapping "+sir.Addr(id).String(), &k); err != nil {
			return err
		}
		return d.unrefLocator(ila.Locator(he(old.Loc)))
	})
}

// UpsertLocal binds a task's SIR address to its port: packets for it are
// delivered there and it may send only from there.
func (d *Datapath) UpsertLocal(l Local) error {
	if err := l.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(l.SIR, l.Identifier)
	var old xlatIlaLocalVal
	if d.objs.IlaLocals.Lookup(&k, &old) == nil && int(old.Ifindex) != l.Ifindex {
		if err := d.unbindPort(int(old.Ifindex), k); err != nil {
			return err
		}
	}
	v := xlatIlaLocalVal{Ifindex: uint32(l.Ifindex)}
	if !l.MAC.IsZero() {
		copy(v.Mac[:], l.MAC[:])
		v.HasMac = 1
	}
	if l.Suspended {
		v.Flags |= uint8(xlatIlaLocalFlagILA_LOCAL_F_SUSPENDED)
	}
	if err := d.update(d.objs.IlaLocals, "local "+l.Addr().String(), &k, &v); err != nil {
		return err
	}
	// The port table (the programs' cheap anti-spoofing check) covers
	// ifindexes below ILA_MAX_PORT_IFINDEX; others use ila_locals only.
	if l.Ifindex < int(xlatIlaLimitILA_MAX_PORT_IFINDEX) {
		var p xlatIlaPort
		if err := d.objs.IlaPorts.Lookup(uint32(l.Ifindex), &p); err != nil {
			return fmt.Errorf("read port %d: %w", l.Ifindex, err)
		}
		if p == (xlatIlaPort{}) {
			p = xlatIlaPort{Sir: k.Sir, Id: k.Id}
			if err := d.objs.IlaPorts.Put(uint32(l.Ifindex), &p); err != nil {
				return fmt.Errorf("write port %d: %w", l.Ifindex, err)
			}
		}
		if p.Sir == k.Sir && p.Id == k.Id {
			// The port's first address names its tenant and IPv4 source.
			e := xlatIlaPortExt{Tenant: uint32(l.Tenant)}
			if l.IPv4.IsValid() {
				e.Ipv4 = binary.NativeEndian.Uint32(l.IPv4.Unmap().AsSlice())
			}
			if err := d.objs.IlaPortExts.Put(uint32(l.Ifindex), &e); err != nil {
				return fmt.Errorf("write port %d tenant: %w", l.Ifindex, err)
			}
		}
	}
	return nil
}

// AllowTenants lets tenants a and b reach each other (a policy); tasks of
// one tenant always do.
func (d *Datapath) AllowTenants(a, b ila.TenantID) error {
	if a == 0 || b == 0 || a == b {
		return fmt.Errorf("policy %d<->%d: want two different tenants", a, b)
	}
	k := xlatIlaPolicyKey{A: uint32(min(a, b)), B: uint32(max(a, b))}
	if err := d.objs.IlaPolicy.Put(&k, uint8(1)); err != nil {
		if errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("policy %d<->%d: %w", a, b, ErrFull)
		}
		return fmt.Errorf("write policy %d<->%d: %w", a, b, err)
	}
	return nil
}

// DisallowTenants removes the policy between a and b; an absent one is not
// an error.
func (d *Datapath) DisallowTenants(a, b ila.TenantID) error {
	k := xlatIlaPolicyKey{A: uint32(min(a, b)), B: uint32(max(a, b))}
	if err := d.objs.IlaPolicy.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete policy %d<->%d: %w", a, b, err)
	}
	return nil
}

// TenantPolicies returns the pairs of tenants allowed to reach each other.
func (d *Datapath) TenantPolicies() ([][2]ila.TenantID, error) {
	var (
		k   xlatIlaPolicyKey
		v   uint8
		out [][2]ila.TenantID
	)
	it := d.objs.IlaPolicy.Iterate()
	for it.Next(&k, &v) {
		out = append(out, [2]ila.TenantID{ila.TenantID(k.A), ila.TenantID(k.B)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate policies: %w", err)
	}
	return out, nil
}

// unbindPort clears the port table slot of ifindex if it holds k.
func (d *Datapath) unbindPort(ifindex int, k xlatIlaKey) error {
	if ifindex <= 0 || ifindex >= int(xlatIlaLimitILA_MAX_PORT_IFINDEX) {
		return nil
	}
	var p xlatIlaPort
	if err := d.objs.IlaPorts.Lookup(uint32(ifindex), &p); err != nil {
		return fmt.Errorf("read port %d: %w", ifindex, err)
	}
	if p.Sir != k.Sir || p.Id != k.Id {
		return nil
	}
	if err := d.objs.IlaPorts.Put(uint32(ifindex), &xlatIlaPort{}); err != nil {
		return fmt.Errorf("clear port %d: %w", ifindex, err)
	}
	if err := d.objs.IlaPortExts.Put(uint32(ifindex), &xlatIlaPortExt{}); err != nil {
		return fmt.Errorf("clear port %d tenant: %w", ifindex, err)
	}
	return nil
}

// DeleteLocal removes a local task; deleting an absent one is not an error.
func (d *Datapath) DeleteLocal(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(sir, id)
	var old xlatIlaLocalVal
	if d.objs.IlaLocals.Lookup(&k, &old) != nil {
		return nil
	}
	if err := d.unbindPort(int(old.Ifindex), k); err != nil {
		return err
	}
	return d.del(d.objs.IlaLocals, "local "+sir.Addr(id).String(), &k)
}

func monotonic(t time.Time) uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	now := time.Duration(ts.Nano())
	d := time.Until(t)
	if now+d < 0 {
		return 0
	}
	return uint64(now + d)
}

// UpsertInFlight makes packets still arriving here for m's identifier be
// re-translated to m.Locator and sent back out, until the deadline.
func (d *Datapath) UpsertInFlight(m ila.Mapping, until time.Time) error {
	if err := checkMapping("in-flight entry", m); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(m.SIR, m.Identifier)
	var old xlatIlaInflightVal
	had := d.objs.IlaInflight.Lookup(&k, &old) == nil
	oldLoc := ila.Locator(he(old.Loc))
	if !had || oldLoc != m.Locator {
		if err := d.refLocator(m.Locator, m.SIR, m.Csum); err != nil {
			return fmt.Errorf("in-flight entry %s: %w", m.SIRAddr(), err)
		}
	}
	v := xlatIlaInflightVal{Loc: ne(uint64(m.Locator)), DeadlineNs: monotonic(until), Csum: uint8(m.Csum)}
	if err := d.update(d.objs.IlaInflight, "in-flight entry "+m.SIRAddr().String(), &k, &v); err != nil {
		if !had || oldLoc != m.Locator {
			_ = d.unrefLocator(m.Locator)
		}
		return err
	}
	if had && oldLoc != m.Locator {
		return d.unrefLocator(oldLoc)
	}
	return nil
}

// DeleteInFlight removes an in-flight entry; an absent one is not an error.
func (d *Datapath) DeleteInFlight(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deleteInFlight(key(sir, id), sir.Addr(id).String())
}

func (d *Datapath) deleteInFlight(k xlatIlaKey, name string) error {
	var old xlatIlaInflightVal
	if d.objs.IlaInflight.Lookup(&k, &old) != nil {
		return nil
	}
	if err := d.del(d.objs.IlaInflight, "in-flight entry "+name, &k); err != nil {
		return err
	}
	return d.unrefLocator(ila.Locator(he(old.Loc)))
}

// ExpireInFlight deletes in-flight entries whose deadline is before now
// (the programs already ignore them) and returns how many it deleted.
func (d *Datapath) ExpireInFlight(now time.Time) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cut := monotonic(now)
	var (
		k    xlatIlaKey
		v    xlatIlaInflightVal
		dead []xlatIlaKey
	)
	it := d.objs.IlaInflight.Iterate()
	for it.Next(&k, &v) {
		if v.DeadlineNs <= cut {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate in-flight entries: %w", err)
	}
	for _, k := range dead {
		if err := d.deleteInFlight(k, ila.SIRPrefix(he(k.Sir)).Addr(ila.Identifier(he(k.Id))).String()); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}

// Mappings calls fn for every mapping until fn returns false.
func (d *Datapath) Mappings(fn func(ila.Mapping) bool) error {
	return d.dumpMappings(func(k xlatIlaKey, v xlatIlaMapVal) bool {
		return fn(ila.Mapping{SIR: ila.SIRPrefix(he(k.Sir)), Identifier: ila.Identifier(he(k.Id)), Locator: ila.Locator(he(v.Loc)), Csum: ila.CsumMode(v.Csum), Tenant: ila.TenantID(v.Tenant)})
	})
}
