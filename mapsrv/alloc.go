package mapsrv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Allocation keys (documented in docs/etcd-layout.md).
const (
	// AllocPrefix holds Allocation: /ila/v1/allocs/<tenant>/<name>.
	AllocPrefix = Prefix + "allocs/"
	// AllocIDPrefix holds AllocOwner, the reservation that makes an
	// allocated identifier unique in its domain:
	// /ila/v1/alloc-ids/<domain>/<identifier 16 hex>.
	AllocIDPrefix = Prefix + "alloc-ids/"
)

// AllocKey returns the key of the allocation of task tenant/name.
func AllocKey(tenant, name string) string { return AllocPrefix + tenant + "/" + name }

// AllocIDKey returns the key reserving identifier id in domain.
func AllocIDKey(domain string, id ila.Identifier) string {
	return AllocIDPrefix + domain + "/" + strings.TrimPrefix(TaskKey(domain, id), MapPrefix+domain+"/")
}

// Allocation is a SIR address the mapping service handed out for a named
// task. It outlives the task's registrations: a container rescheduled to
// another node (deleted here, created there) asks again by its name and
// gets the same address. It is removed by ReleaseAddress only.
type Allocation struct {
	Domain     string         `json:"domain"`
	Tenant     string         `json:"tenant"`
	Name       string         `json:"name"`
	Identifier ila.Identifier `json:"identifier"`
	SIR        netip.Addr     `json:"sir"`
	// VNI and IPv4: an IPv4 tenant's allocation (AllocRequest.VNI); the
	// identifier is the VN-IPv4 identifier of the two.
	VNI     uint32     `json:"vni,omitempty"`
	IPv4    netip.Addr `json:"ipv4,omitzero"`
	Created time.Time  `json:"created"`
}

// AllocOwner is the value of an identifier reservation: who holds it.
type AllocOwner struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
}

// AllocRequest asks for the SIR address of a named task.
type AllocRequest struct {
	// Domain; empty: the only domain (an error when there are several).
	Domain string `json:"domain,omitempty"`
	Tenant string `json:"tenant,omitempty"` // default "default"
	Name   string `json:"name"`
	// VNI and IPv4Net ask for an IPv4 tenant's address: a free address of
	// IPv4Net (neither its network nor its broadcast address, nor one of
	// IPv4Exclude, such as the subnet's gateway) whose VN-IPv4 identifier
	// (ila.NewVNIPv4) no task and no other allocation holds. Zero: a LUID.
	VNI         uint32       `json:"vni,omitempty"`
	IPv4Net     netip.Prefix `json:"ipv4_net,omitzero"`
	IPv4Exclude []netip.Addr `json:"ipv4_exclude,omitempty"`
}

// maxIPv4Exclude bounds AllocRequest.IPv4Exclude.
const maxIPv4Exclude = 64

// check reports a request that cannot be served (ErrInvalid).
func (r AllocRequest) check() error {
	if r.VNI == 0 {
		if r.IPv4Net.IsValid() || len(r.IPv4Exclude) > 0 {
			return fmt.Errorf("allocate %s/%s: ipv4_net and ipv4_exclude need a vni: %w", r.Tenant, r.Name, ErrInvalid)
		}
		return nil
	}
	if r.VNI > ila.MaxVNID {
		return fmt.Errorf("allocate %s/%s: vni %d: above %d: %w", r.Tenant, r.Name, r.VNI, ila.MaxVNID, ErrInvalid)
	}
	if !r.IPv4Net.Addr().Is4() || r.IPv4Net.Bits() < 8 || r.IPv4Net.Bits() > 30 {
		return fmt.Errorf("allocate %s/%s: ipv4_net %v: want an IPv4 subnet from /8 to /30: %w", r.Tenant, r.Name, r.IPv4Net, ErrInvalid)
	}
	if len(r.IPv4Exclude) > maxIPv4Exclude {
		return fmt.Errorf("allocate %s/%s: %d ipv4_exclude addresses, at most %d: %w", r.Tenant, r.Name, len(r.IPv4Exclude), maxIPv4Exclude, ErrInvalid)
	}
	for _, a := range r.IPv4Exclude {
		if !a.Is4() {
			return fmt.Errorf("allocate %s/%s: ipv4_exclude %v: want an IPv4 address: %w", r.Tenant, r.Name, a, ErrInvalid)
		}
	}
	return nil
}

// DecodeAllocation decodes the value of an allocation key and checks it
// against the key.
func DecodeAllocation(key string, b []byte) (Allocation, error) {
	var a Allocation
	if err := decodeStrict(b, &a); err != nil {
		return a, fmt.Errorf("allocation %s: %w: %w", key, ErrMalformed, err)
	}
	if key != AllocKey(a.Tenant, a.Name) {
		return a, fmt.Errorf("allocation %s: tenant %q and name %q do not match the key: %w", key, a.Tenant, a.Name, ErrMalformed)
	}
	if a.Domain == "" || !a.SIR.Is6() || ila.IdentifierOf(a.SIR) != a.Identifier {
		return a, fmt.Errorf("allocation %s: no domain, or sir %s does not carry identifier %s: %w", key, a.SIR, a.Identifier, ErrMalformed)
	}
	if a.VNI != 0 || a.IPv4.IsValid() {
		if id, err := ila.NewVNIPv4(a.VNI, a.IPv4); err != nil || id != a.Identifier {
			return a, fmt.Errorf("allocation %s: identifier %s is not vni %d with ipv4 %v: %w", key, a.Identifier, a.VNI, a.IPv4, ErrMalformed)
		}
	}
	return a, nil
}

// allocAttempts bounds the retries of an allocation whose transaction
// lost a race (another replica allocated the same name or identifier).
const allocAttempts = 8

// AllocateAddress returns the SIR address of the named task, allocating
// one if the name has none: the address of its allocation if it has one;
// else, if the task is registered in the domain, its current address
// (which is kept from then on); else a new LUID identifier in the
// domain's SIR prefix that no task and no other allocation holds. created
// reports that this call made the allocation (a caller that fails later
// releases it so that nothing is left behind).
func (s *Service) AllocateAddress(ctx context.Context, r AllocRequest) (a Allocation, created bool, err error) {
	if r.Tenant == "" {
		r.Tenant = "default"
	}
	if err := CheckName("tenant", r.Tenant); err != nil {
		return a, false, err
	}
	if err := CheckName("task", r.Name); err != nil {
		return a, false, err
	}
	if err := r.check(); err != nil {
		return a, false, err
	}
	d, err := s.allocDomain(ctx, r.Domain)
	if err != nil {
		return a, false, err
	}
	for range allocAttempts {
		a, created, err = s.allocate(ctx, d, r)
		if !errors.Is(err, errAllocRace) {
			return a, created, err
		}
	}
	return a, false, fmt.Errorf("allocate %s/%s: lost %d races in a row: %w", r.Tenant, r.Name, allocAttempts, ErrConflict)
}

// errAllocRace: the allocation transaction's comparison failed; retry.
var errAllocRace = errors.New("allocation race")

func (s *Service) allocDomain(ctx context.Context, name string) (ila.Domain, error) {
	if name != "" {
		d, _, err := s.getDomain(ctx, name)
		return d, err
	}
	doms, err := s.Domains(ctx)
	if err != nil {
		return ila.Domain{}, err
	}
	if len(doms) != 1 {
		return ila.Domain{}, fmt.Errorf("allocate: a domain is required (%d domains): %w", len(doms), ErrInvalid)
	}
	return doms[0], nil
}

func (s *Service) allocate(ctx context.Context, d ila.Domain, r AllocRequest) (Allocation, bool, error) {
	akey := AllocKey(r.Tenant, r.Name)
	kvs, err := s.store.Get(ctx, akey, NameKey(r.Tenant, r.Name))
	if err != nil {
		return Allocation{}, false, s.storeErr(fmt.Errorf("get allocation %s/%s: %w", r.Tenant, r.Name, err))
	}
	akv, nkv := kvs[0], kvs[1]
	if akv.Revision != 0 {
		a, err := DecodeAllocation(akv.Key, akv.Value)
		if err == nil {
			if a.Domain != d.Name {
				return a, false, fmt.Errorf("task %s/%s: has an address in domain %s, not %s: %w", r.Tenant, r.Name, a.Domain, d.Name, ErrConflict)
			}
			if a.VNI != r.VNI || r.VNI != 0 && !r.IPv4Net.Contains(a.IPv4) {
				return a, false, fmt.Errorf("task %s/%s: has the address %s (vni %d, ipv4 %v), not one of vni %d in %v: %w", r.Tenant, r.Name, a.SIR, a.VNI, a.IPv4, r.VNI, r.IPv4Net, ErrConflict)
			}
			return a, false, nil
		}
		s.malformed(akv, err) // replaced below
	}
	// The task's current address, if it is registered in this domain.
	var id ila.Identifier
	adopt := false
	if nkv.Revision != 0 {
		if x, err := DecodeIndex(nkv.Key, nkv.Value); err == nil && x.Domain == d.Name {
			rec, _, err := s.resolve(ctx, "", "", x.Domain, x.Identifier)
			if err == nil && rec.Tenant == r.Tenant && rec.Name == r.Name && rec.VNI == r.VNI && (r.VNI == 0 || r.IPv4Net.Contains(rec.IPv4)) {
				id, adopt = x.Identifier, true
			}
		}
	}
	for try := 0; ; try++ {
		if !adopt {
			if r.VNI != 0 {
				id, err = s.freeIPv4(ctx, d, r)
			} else {
				id, err = randomLUID(d)
			}
			if err != nil {
				return Allocation{}, false, err
			}
		}
		kvs, err := s.store.Get(ctx, AllocIDKey(d.Name, id), TaskKey(d.Name, id))
		if err != nil {
			return Allocation{}, false, s.storeErr(fmt.Errorf("get identifier %s: %w", id, err))
		}
		ikv, tkv := kvs[0], kvs[1]
		if !adopt && (ikv.Revision != 0 || tkv.Revision != 0) {
			if try < 16 {
				continue // taken: draw again
			}
			return Allocation{}, false, fmt.Errorf("allocate %s/%s: no free identifier found in domain %s: %w", r.Tenant, r.Name, d.Name, ErrConflict)
		}
		if adopt && ikv.Revision != 0 {
			own, _ := decodeOwner(ikv)
			return Allocation{}, false, fmt.Errorf("task %s/%s: its address %s is allocated to %s/%s: %w", r.Tenant, r.Name, d.SIR.Addr(id), own.Tenant, own.Name, ErrConflict)
		}
		a := Allocation{Domain: d.Name, Tenant: r.Tenant, Name: r.Name, Identifier: id, SIR: d.SIR.Addr(id), Created: s.cfg.Now().UTC()}
		if r.VNI != 0 {
			a.VNI, a.IPv4 = r.VNI, id.IPv4()
		}
		b := &txnBuilder{}
		b.cond(akv)
		b.cond(ikv)
		b.cond(tkv)
		b.put(akv.Key, a)
		b.put(ikv.Key, AllocOwner{Tenant: r.Tenant, Name: r.Name})
		if err := s.commit(ctx, b, "allocate "+r.Tenant+"/"+r.Name); err != nil {
			if errors.Is(err, ErrConflict) {
				return a, false, errAllocRace
			}
			return a, false, err
		}
		return a, true, nil
	}
}

func decodeOwner(kv KV) (AllocOwner, error) {
	var o AllocOwner
	if err := decodeStrict(kv.Value, &o); err != nil {
		return o, fmt.Errorf("allocation owner %s: %w: %w", kv.Key, ErrMalformed, err)
	}
	return o, nil
}

// freeIPv4 returns the VN-IPv4 identifier of an address of r.IPv4Net
// that no task and no allocation of r.VNI in domain d holds, starting the
// search at a random address (so that concurrent allocations rarely
// race).
func (s *Service) freeIPv4(ctx context.Context, d ila.Domain, r AllocRequest) (ila.Identifier, error) {
	base, err := ila.NewVNIPv4(r.VNI, netip.IPv4Unspecified())
	if err != nil {
		return 0, fmt.Errorf("allocate %s/%s: %w: %w", r.Tenant, r.Name, ErrInvalid, err)
	}
	// The identifiers of one VNI share their 8 high hex digits.
	head := strings.TrimPrefix(TaskKey(d.Name, base), MapPrefix+d.Name+"/")[:8]
	used := map[uint32]bool{}
	for _, prefix := range []string{AllocIDPrefix + d.Name + "/" + head, MapPrefix + d.Name + "/" + head} {
		kvs, _, err := s.store.List(ctx, prefix)
		if err != nil {
			return 0, s.storeErr(fmt.Errorf("list vni %d identifiers: %w", r.VNI, err))
		}
		for _, kv := range kvs {
			hex := kv.Key[strings.LastIndexByte(kv.Key, '/')+1:]
			var id ila.Identifier
			if err := id.UnmarshalText([]byte(hex)); err == nil {
				used[uint32(id)] = true
			}
		}
	}
	for _, a := range r.IPv4Exclude {
		b := a.As4()
		used[binary.BigEndian.Uint32(b[:])] = true
	}
	nb := r.IPv4Net.Masked().Addr().As4()
	first := binary.BigEndian.Uint32(nb[:]) + 1
	n := uint32(1)<<(32-r.IPv4Net.Bits()) - 2 // without network and broadcast
	var rb [4]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return 0, fmt.Errorf("allocate: random address: %w", err)
	}
	start := binary.BigEndian.Uint32(rb[:]) % n
	for i := range n {
		v := first + (start+i)%n
		if used[v] {
			continue
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		id, err := ila.NewVNIPv4(r.VNI, netip.AddrFrom4(b))
		if err != nil || d.CheckIdentifier(id) != nil {
			continue
		}
		return id, nil
	}
	return 0, fmt.Errorf("allocate %s/%s: no free address of vni %d in %v: %w", r.Tenant, r.Name, r.VNI, r.IPv4Net, ErrConflict)
}

// randomLUID draws a LUID the domain accepts.
func randomLUID(d ila.Domain) (ila.Identifier, error) {
	for {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("allocate: random identifier: %w", err)
		}
		id, err := ila.NewLUID(binary.BigEndian.Uint64(b[:]) & ila.MaxID)
		if err != nil {
			return 0, err
		}
		if d.CheckIdentifier(id) == nil {
			return id, nil
		}
	}
}

// Allocation returns the allocation of task tenant/name.
func (s *Service) Allocation(ctx context.Context, tenant, name string) (Allocation, error) {
	a, _, err := s.getAllocation(ctx, tenant, name)
	return a, err
}

func (s *Service) getAllocation(ctx context.Context, tenant, name string) (Allocation, KV, error) {
	if tenant == "" {
		tenant = "default"
	}
	if err := CheckName("tenant", tenant); err != nil {
		return Allocation{}, KV{}, err
	}
	if err := CheckName("task", name); err != nil {
		return Allocation{}, KV{}, err
	}
	kvs, err := s.store.Get(ctx, AllocKey(tenant, name))
	if err != nil {
		return Allocation{}, KV{}, s.storeErr(fmt.Errorf("get allocation %s/%s: %w", tenant, name, err))
	}
	if kvs[0].Revision == 0 {
		return Allocation{}, kvs[0], fmt.Errorf("allocation %s/%s: %w", tenant, name, ErrNotFound)
	}
	a, err := DecodeAllocation(kvs[0].Key, kvs[0].Value)
	if err != nil {
		s.malformed(kvs[0], err)
		return Allocation{}, kvs[0], err
	}
	return a, kvs[0], nil
}

// ReleaseAddress removes the allocation of task tenant/name (the task, if
// registered, keeps its mapping). ErrNotFound if there is none.
func (s *Service) ReleaseAddress(ctx context.Context, tenant, name string) error {
	a, akv, err := s.getAllocation(ctx, tenant, name)
	if errors.Is(err, ErrMalformed) {
		b := &txnBuilder{}
		b.cond(akv)
		b.del(akv.Key)
		return s.commit(ctx, b, "release "+akv.Key)
	}
	if err != nil {
		return err
	}
	ikey := AllocIDKey(a.Domain, a.Identifier)
	kvs, err := s.store.Get(ctx, ikey)
	if err != nil {
		return s.storeErr(fmt.Errorf("get identifier %s: %w", a.Identifier, err))
	}
	b := &txnBuilder{}
	b.cond(akv)
	b.del(akv.Key)
	if own, err := decodeOwner(kvs[0]); kvs[0].Revision != 0 && err == nil && own == (AllocOwner{Tenant: a.Tenant, Name: a.Name}) {
		b.cond(kvs[0])
		b.del(ikey)
	}
	return s.commit(ctx, b, "release "+a.Tenant+"/"+a.Name)
}
