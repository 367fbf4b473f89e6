package dnsbridge

// refZone is the zone as it was before the compact representation
// (records as dns.RR objects in maps): the reference the compact zone is
// checked against (TestCompactZoneMatchesReference).

import (
	"slices"
	"strings"
	"sync"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// refNode holds the RRsets of one owner name. The slices are never modified
// after they are stored (copy on write), so a reader may keep one after it
// drops the lock.
type refNode struct {
	sets map[uint16][]dns.RR
}

// zone is the in-memory data served: every record of every served zone,
// indexed by owner name. Writers (the watch) take the write lock per event
// and update it incrementally; readers take the read lock for one lookup.
type refZone struct {
	mu sync.RWMutex

	b    builder
	cfg  Config
	soaT uint32 // SOA MINIMUM in seconds

	nodes   map[string]*refNode
	ents    map[string]int // names with descendants (empty non-terminals)
	zones   map[string]int // zone apex -> contributors
	owners  map[string]contrib
	tasks   map[string]*ila.Task
	nves    map[string]*ila.NVE
	domains map[string]*ila.Domain

	synced  bool
	serial  uint32
	history []delta
	histRRs int
	// seen is non-nil while a fresh watch lists the store: owners not
	// seen by its first EventSynced are removed.
	seen map[string]bool
	// dirty holds the zones changed since the last NOTIFY.
	dirty map[string]bool

	badNames int64
	events   int64
}

func newRefZone(cfg Config) *refZone {
	z := &refZone{
		b:       builder{apex: cfg.Zone, ttl: uint32(cfg.TTL.Seconds()), deriveV4: len(cfg.ReverseV4) == 0},
		cfg:     cfg,
		soaT:    uint32(cfg.NegativeTTL.Seconds()),
		nodes:   make(map[string]*refNode),
		ents:    make(map[string]int),
		zones:   make(map[string]int),
		owners:  make(map[string]contrib),
		tasks:   make(map[string]*ila.Task),
		nves:    make(map[string]*ila.NVE),
		domains: make(map[string]*ila.Domain),
		dirty:   make(map[string]bool),
	}
	z.setOwner(staticOwner, z.b.static(cfg))
	return z
}

// beginList starts a fresh watch: the records it lists replace everything.
func (z *refZone) beginList() {
	z.mu.Lock()
	z.seen = make(map[string]bool)
	z.mu.Unlock()
}

// apply folds one watch event into the zone and reports whether the
// served data changed.
func (z *refZone) apply(ev ila.Event) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.events++
	var d diff
	switch ev.Type {
	case ila.EventTaskUpsert, ila.EventTaskDelete:
		if ev.Task == nil {
			return false
		}
		t := *ev.Task
		k := taskKey(&t)
		if ev.Type == ila.EventTaskDelete {
			delete(z.tasks, k)
			d.join(z.setOwner(k, contrib{}))
			break
		}
		z.tasks[k] = &t
		z.mark(k)
		d.join(z.setOwner(k, z.taskContrib(&t)))
	case ila.EventNVEUpsert, ila.EventNVEDelete:
		if ev.NVE == nil {
			return false
		}
		n := *ev.NVE
		k := nveKey(&n)
		if ev.Type == ila.EventNVEDelete {
			delete(z.nves, k)
			d.join(z.setOwner(k, contrib{}))
			break
		}
		z.nves[k] = &n
		z.mark(k)
		c, ok := z.b.nve(&n)
		if !ok {
			z.badNames++
		}
		d.join(z.setOwner(k, c))
	case ila.EventDomainUpsert, ila.EventDomainDelete:
		if ev.Domain == nil {
			return false
		}
		dm := *ev.Domain
		k := domainKey(dm.Name)
		if ev.Type == ila.EventDomainDelete {
			delete(z.domains, dm.Name)
			d.join(z.setOwner(k, contrib{}))
		} else {
			z.domains[dm.Name] = &dm
			z.mark(k)
			d.join(z.setOwner(k, z.b.domain(&dm)))
		}
		for tk, t := range z.tasks {
			if t.Domain == dm.Name {
				d.join(z.setOwner(tk, z.taskContrib(t)))
			}
		}
	case ila.EventSynced:
		if z.seen != nil {
			for k := range z.owners {
				if k != staticOwner && !z.seen[k] {
					z.forget(k)
					d.join(z.setOwner(k, contrib{}))
				}
			}
			z.seen = nil
		}
		if !z.synced {
			z.synced = true
			z.serial = max(uint32(ev.Revision), 1)
			for zn := range z.zones {
				z.dirty[zn] = true
			}
			return true
		}
	default:
		return false
	}
	return z.record(ev.Revision, d)
}

func (z *refZone) mark(k string) {
	if z.seen != nil {
		z.seen[k] = true
	}
}

func (z *refZone) forget(k string) {
	delete(z.tasks, k)
	delete(z.nves, k)
	if name, ok := strings.CutPrefix(k, "d\x00"); ok {
		delete(z.domains, name)
	}
}

func (z *refZone) taskContrib(t *ila.Task) contrib {
	c, ok := z.b.task(t, z.domains[t.Domain])
	if !ok {
		z.badNames++
	}
	return c
}

// record bumps the serial for a change seen at store revision rev and keeps
// the change for IXFR. Changes at the revision of the last delta (one etcd
// transaction delivered as several events) join it.
func (z *refZone) record(rev int64, d diff) bool {
	if len(d.del)+len(d.add) == 0 {
		return false
	}
	if !z.synced {
		return true
	}
	for _, rrs := range [][]dns.RR{d.del, d.add} {
		for _, r := range rrs {
			if zn := z.zoneOf(r.Header().Name); zn != "" {
				z.dirty[zn] = true
			}
		}
	}
	if n := len(z.history); n > 0 && z.history[n-1].rev == rev && z.history[n-1].to == z.serial {
		last := &z.history[n-1]
		z.histRRs -= len(last.del) + len(last.add)
		last.del, last.add = merge(last.del, last.add, d.del, d.add)
		z.histRRs += len(last.del) + len(last.add)
	} else {
		next := uint32(rev)
		if !serialGreater(next, z.serial) {
			next = z.serial + 1
		}
		z.history = append(z.history, delta{rev: rev, from: z.serial, to: next, del: d.del, add: d.add})
		z.histRRs += len(d.del) + len(d.add)
		z.serial = next
	}
	for len(z.history) > 0 && (len(z.history) > z.cfg.History || z.histRRs > maxHistoryRRs) {
		z.histRRs -= len(z.history[0].del) + len(z.history[0].add)
		z.history = z.history[1:]
	}
	return true
}

// setOwner replaces what owner k contributes with c and returns the
// records removed and added. Records present before and after keep their
// identity, so an unchanged upsert is no change at all.
func (z *refZone) setOwner(k string, c contrib) diff {
	old := z.owners[k]
	var d diff
	kept := make([]dns.RR, 0, len(c.rrs))
	for _, r := range old.rrs {
		if indexDup(c.rrs, r) >= 0 {
			kept = append(kept, r)
			continue
		}
		d.del = append(d.del, r)
		z.removeRR(r)
	}
	for _, r := range c.rrs {
		if indexDup(old.rrs, r) >= 0 {
			continue
		}
		if indexDup(d.add, r) >= 0 {
			continue // the same record twice from one owner
		}
		d.add = append(d.add, r)
		kept = append(kept, r)
		z.addRR(r)
	}
	for _, zn := range c.zones {
		z.zones[zn]++
	}
	for _, zn := range old.zones {
		if z.zones[zn]--; z.zones[zn] <= 0 {
			delete(z.zones, zn)
		}
	}
	if len(kept) == 0 && len(c.zones) == 0 {
		delete(z.owners, k)
	} else {
		z.owners[k] = contrib{rrs: kept, zones: c.zones}
	}
	return d
}

func (z *refZone) addRR(r dns.RR) {
	h := r.Header()
	n := z.nodes[h.Name]
	if n == nil {
		n = &refNode{sets: make(map[uint16][]dns.RR, 2)}
		z.nodes[h.Name] = n
		z.walkAncestors(h.Name, 1)
	}
	old := n.sets[h.Rrtype]
	set := make([]dns.RR, len(old), len(old)+1)
	copy(set, old)
	n.sets[h.Rrtype] = append(set, r)
}

func (z *refZone) removeRR(r dns.RR) {
	h := r.Header()
	n := z.nodes[h.Name]
	if n == nil {
		return
	}
	old := n.sets[h.Rrtype]
	i := slices.Index(old, r)
	if i < 0 {
		return
	}
	if len(old) == 1 {
		delete(n.sets, h.Rrtype)
	} else {
		n.sets[h.Rrtype] = slices.Delete(slices.Clone(old), i, i+1)
	}
	if len(n.sets) == 0 {
		delete(z.nodes, h.Name)
		z.walkAncestors(h.Name, -1)
	}
}

// walkAncestors counts name as a descendant of each of its ancestors.
func (z *refZone) walkAncestors(name string, by int) {
	for i := 0; ; {
		j, end := dns.NextLabel(name, i)
		if end || j >= len(name) {
			return
		}
		a := name[j:]
		if z.ents[a] += by; z.ents[a] <= 0 {
			delete(z.ents, a)
		}
		i = j
	}
}

// zoneOf returns the longest served zone containing name (lower case,
// fully qualified), or "".
func (z *refZone) zoneOf(name string) string {
	for i := 0; ; {
		if _, ok := z.zones[name[i:]]; ok {
			return name[i:]
		}
		j, end := dns.NextLabel(name, i)
		if end || j >= len(name) {
			return ""
		}
		i = j
	}
}

func (z *refZone) soa(zn string, serial uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zn, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: z.b.ttl},
		Ns:      z.cfg.NS[0],
		Mbox:    "hostmaster." + z.cfg.Zone,
		Serial:  serial,
		Refresh: 60,
		Retry:   10,
		Expire:  7 * 24 * 3600,
		Minttl:  z.soaT,
	}
}

// negSOA is the SOA put in the authority section of a negative answer:
// its TTL is the smaller of its own and MINIMUM (RFC 2308 section 3).
func (z *refZone) negSOA(zn string) *dns.SOA {
	s := z.soa(zn, z.serial)
	s.Hdr.Ttl = min(s.Hdr.Ttl, s.Minttl)
	return s
}

func (z *refZone) ns(zn string) []dns.RR {
	rrs := make([]dns.RR, len(z.cfg.NS))
	for i, n := range z.cfg.NS {
		rrs[i] = &dns.NS{Hdr: dns.RR_Header{Name: zn, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: z.b.ttl}, Ns: n}
	}
	return rrs
}

// lookup answers qname (lower case, fully qualified) and qtype.
func (z *refZone) lookup(qname string, qtype uint16) result {
	z.mu.RLock()
	defer z.mu.RUnlock()
	zn := z.zoneOf(qname)
	if zn == "" {
		return result{rcode: dns.RcodeRefused}
	}
	if !z.synced {
		return result{zone: zn, rcode: dns.RcodeServerFailure}
	}
	res := result{zone: zn, rcode: dns.RcodeSuccess}
	n := z.nodes[qname]
	if qname == zn {
		switch qtype {
		case dns.TypeSOA:
			res.answer = []dns.RR{z.soa(zn, z.serial)}
		case dns.TypeNS:
			res.answer = z.ns(zn)
		case dns.TypeANY:
			res.answer = append([]dns.RR{z.soa(zn, z.serial)}, z.ns(zn)...)
		}
	}
	if n != nil {
		if qtype == dns.TypeANY {
			for _, set := range n.sets {
				res.answer = append(res.answer, set...)
			}
		} else if set := n.sets[qtype]; len(set) > 0 {
			if res.answer == nil {
				res.answer = set
			} else {
				res.answer = append(res.answer, set...)
			}
		}
	}
	if len(res.answer) > 0 {
		return res
	}
	res.ns = []dns.RR{z.negSOA(zn)}
	if n == nil && qname != zn && z.ents[qname] == 0 {
		res.rcode = dns.RcodeNameError
	}
	return res
}

// state returns whether the zone is synced and its serial.
func (z *refZone) state() (bool, uint32) {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return z.synced, z.serial
}

// served returns the zones served, sorted.
func (z *refZone) served() []string {
	z.mu.RLock()
	defer z.mu.RUnlock()
	out := make([]string, 0, len(z.zones))
	for zn := range z.zones {
		out = append(out, zn)
	}
	slices.Sort(out)
	return out
}

// axfr returns the whole zone zn: SOA, NS, every record, SOA.
func (z *refZone) axfr(zn string) []dns.RR {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return z.axfrLocked(zn)
}

func (z *refZone) axfrLocked(zn string) []dns.RR {
	soa := z.soa(zn, z.serial)
	out := []dns.RR{soa}
	out = append(out, z.ns(zn)...)
	names := make([]string, 0)
	for name := range z.nodes {
		if z.zoneOf(name) == zn {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		n := z.nodes[name]
		types := make([]uint16, 0, len(n.sets))
		for t := range n.sets {
			types = append(types, t)
		}
		slices.Sort(types)
		for _, t := range types {
			out = append(out, n.sets[t]...)
		}
	}
	return append(out, soa)
}

// ixfr returns the IXFR answer for a client at serial from: the current
// SOA alone when it is up to date, the deltas since from when the history
// holds them, or else the whole zone (RFC 1995 section 4).
func (z *refZone) ixfr(zn string, from uint32) []dns.RR {
	z.mu.RLock()
	defer z.mu.RUnlock()
	cur := z.soa(zn, z.serial)
	if !serialGreater(z.serial, from) {
		return []dns.RR{cur}
	}
	i := slices.IndexFunc(z.history, func(d delta) bool { return d.from == from })
	if i < 0 {
		return z.axfrLocked(zn)
	}
	out := []dns.RR{cur}
	for _, d := range z.history[i:] {
		out = append(out, z.soa(zn, d.from))
		out = z.appendIn(out, zn, d.del)
		out = append(out, z.soa(zn, d.to))
		out = z.appendIn(out, zn, d.add)
	}
	return append(out, cur)
}

func (z *refZone) appendIn(out []dns.RR, zn string, rrs []dns.RR) []dns.RR {
	for _, r := range rrs {
		if z.zoneOf(r.Header().Name) == zn {
			out = append(out, r)
		}
	}
	return out
}

// takeDirty returns the zones changed since the last call, sorted.
func (z *refZone) takeDirty() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	out := make([]string, 0, len(z.dirty))
	for zn := range z.dirty {
		if _, ok := z.zones[zn]; ok {
			out = append(out, zn)
		}
	}
	clear(z.dirty)
	slices.Sort(out)
	return out
}
