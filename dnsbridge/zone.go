package dnsbridge

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// maxHistoryRRs bounds the records held by the IXFR history, whatever
// Config.History says.
const maxHistoryRRs = 200_000

// delta is one IXFR step: the records removed and added between two serials.
type delta struct {
	rev      int64
	from, to uint32
	del, add []dns.RR
}

// zone is the in-memory data served: every record of every served zone,
// indexed by owner name. Writers (the watch) take the write lock per event
// and update it incrementally; readers take the read lock for one lookup.
//
// The records are kept compact, in blobMaps of wire-format data with no Go
// pointer per record (see docs/SCALE.md, dnsbridge): a zone of 100k tasks
// is a few large byte slices the garbage collector does not scan, and a
// lookup touches an index and one entry. Answers are dns.RR values built
// per query from that data.
type zone struct {
	mu sync.RWMutex

	b    builder
	cfg  Config
	soaT uint32 // SOA MINIMUM in seconds

	// nodes: owner name -> its records (recs), sorted by type.
	nodes *blobMap
	// ents: name -> number of names below it (empty non-terminals), as
	// addCount counters.
	ents  *blobMap
	zones map[string]int // zone apex -> contributors
	// owners: store record key -> what it contributes (ownerBlob): its
	// records, its zones and, for a task, the task (encodeTask) to
	// rebuild them when its domain changes.
	owners  *blobMap
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

const staticOwner = "s"

func newZone(cfg Config) *zone {
	z := &zone{
		b:       builder{apex: cfg.Zone, ttl: uint32(cfg.TTL.Seconds()), deriveV4: len(cfg.ReverseV4) == 0},
		cfg:     cfg,
		soaT:    uint32(cfg.NegativeTTL.Seconds()),
		nodes:   newBlobMap(),
		ents:    newBlobMap(),
		zones:   make(map[string]int),
		owners:  newBlobMap(),
		nves:    make(map[string]*ila.NVE),
		domains: make(map[string]*ila.Domain),
		dirty:   make(map[string]bool),
	}
	z.setOwner(staticOwner, z.b.static(cfg), nil)
	return z
}

func taskKey(t *ila.Task) string   { return "t\x00" + t.Domain + "\x00" + t.Identifier.Hex() }
func nveKey(n *ila.NVE) string     { return "n\x00" + n.Name }
func domainKey(name string) string { return "d\x00" + name }

// beginList starts a fresh watch: the records it lists replace everything.
func (z *zone) beginList() {
	z.mu.Lock()
	z.seen = make(map[string]bool)
	z.mu.Unlock()
}

// apply folds one watch event into the zone and reports whether the
// served data changed.
func (z *zone) apply(ev ila.Event) bool {
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
			d.join(z.setOwner(k, contrib{}, nil))
			break
		}
		z.mark(k)
		d.join(z.setOwner(k, z.taskContrib(&t), encodeTask(&t)))
	case ila.EventNVEUpsert, ila.EventNVEDelete:
		if ev.NVE == nil {
			return false
		}
		n := *ev.NVE
		k := nveKey(&n)
		if ev.Type == ila.EventNVEDelete {
			delete(z.nves, k)
			d.join(z.setOwner(k, contrib{}, nil))
			break
		}
		z.nves[k] = &n
		z.mark(k)
		c, ok := z.b.nve(&n)
		if !ok {
			z.badNames++
		}
		d.join(z.setOwner(k, c, nil))
	case ila.EventDomainUpsert, ila.EventDomainDelete:
		if ev.Domain == nil {
			return false
		}
		dm := *ev.Domain
		k := domainKey(dm.Name)
		if ev.Type == ila.EventDomainDelete {
			delete(z.domains, dm.Name)
			d.join(z.setOwner(k, contrib{}, nil))
		} else {
			z.domains[dm.Name] = &dm
			z.mark(k)
			d.join(z.setOwner(k, z.b.domain(&dm), nil))
		}
		prefix := "t\x00" + dm.Name + "\x00"
		var keys []string
		z.owners.each(func(k, _ []byte) {
			if strings.HasPrefix(string(k), prefix) {
				keys = append(keys, string(k))
			}
		})
		for _, tk := range keys {
			b, _ := z.owners.get(tk)
			src := decodeOwner(b).src
			if t, ok := decodeTask(src); ok && t.Domain == dm.Name {
				d.join(z.setOwner(tk, z.taskContrib(&t), src))
			}
		}
	case ila.EventSynced:
		if z.seen != nil {
			var gone []string
			z.owners.each(func(k, _ []byte) {
				if string(k) != staticOwner && !z.seen[string(k)] {
					gone = append(gone, string(k))
				}
			})
			slices.Sort(gone)
			for _, k := range gone {
				z.forget(k)
				d.join(z.setOwner(k, contrib{}, nil))
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

func (z *zone) mark(k string) {
	if z.seen != nil {
		z.seen[k] = true
	}
}

func (z *zone) forget(k string) {
	delete(z.nves, k)
	if name, ok := strings.CutPrefix(k, "d\x00"); ok {
		delete(z.domains, name)
	}
}

func (z *zone) taskContrib(t *ila.Task) contrib {
	c, ok := z.b.task(t, z.domains[t.Domain])
	if !ok {
		z.badNames++
	}
	return c
}

type diff struct{ del, add []dns.RR }

func (d *diff) join(o diff) {
	d.del = append(d.del, o.del...)
	d.add = append(d.add, o.add...)
}

// serialGreater is RFC 1982 serial number arithmetic: a > b.
func serialGreater(a, b uint32) bool { return a != b && a-b < 1<<31 }

// record bumps the serial for a change seen at store revision rev and keeps
// the change for IXFR. Changes at the revision of the last delta (one etcd
// transaction delivered as several events) join it.
func (z *zone) record(rev int64, d diff) bool {
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

// merge appends a second change to a first: a record added then removed
// (or removed then added) cancels out.
func merge(del, add, del2, add2 []dns.RR) ([]dns.RR, []dns.RR) {
	del, add = slices.Clone(del), slices.Clone(add)
	for _, r := range del2 {
		if i := indexDup(add, r); i >= 0 {
			add = slices.Delete(add, i, i+1)
			continue
		}
		del = append(del, r)
	}
	for _, r := range add2 {
		if i := indexDup(del, r); i >= 0 {
			del = slices.Delete(del, i, i+1)
			continue
		}
		add = append(add, r)
	}
	return del, add
}

func indexDup(rrs []dns.RR, r dns.RR) int {
	return slices.IndexFunc(rrs, func(x dns.RR) bool { return dns.IsDuplicate(x, r) })
}

// setOwner replaces what owner k contributes with c (and, for a task, its
// encoded source src) and returns the records removed and added. Records
// present before and after stay as they are, so an unchanged upsert is no
// change at all.
func (z *zone) setOwner(k string, c contrib, src []byte) diff {
	oldB, _ := z.owners.get(k)
	old := decodeOwner(oldB)
	next := ownerBlob{src: src, zones: c.zones}
	var d diff
	add := make([]ownerRR, 0, len(c.rrs))
	for _, r := range c.rrs {
		w, ok := packOwnerRR(r)
		if !ok {
			z.badNames++ // a record that does not pack is never served
			continue
		}
		if indexRR(add, w) >= 0 {
			continue // the same record twice from one owner
		}
		add = append(add, w)
	}
	for _, r := range old.rrs {
		if indexRR(add, r) >= 0 {
			next.rrs = append(next.rrs, r)
			continue
		}
		d.del = append(d.del, r.rr())
		z.removeRR(r)
	}
	for _, r := range add {
		if indexRR(old.rrs, r) >= 0 {
			continue
		}
		// As unpacked from the wire, like the records removed, so that
		// merge matches them (TXT strings are escaped when unpacked).
		d.add = append(d.add, r.rr())
		next.rrs = append(next.rrs, r)
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
	if len(next.rrs) == 0 && len(next.zones) == 0 && next.src == nil {
		z.owners.del(k)
	} else {
		z.owners.set(k, next.encode())
	}
	return d
}

// addRR adds r to the records of its owner name, after those of the same
// type.
func (z *zone) addRR(r ownerRR) {
	old, ok := z.nodes.get(r.name)
	if !ok {
		z.walkAncestors(r.name, 1)
	}
	t := r.rtype()
	at := len(old)
	for i := 0; i < len(old); {
		n := recLen(old[i:])
		if binary.BigEndian.Uint16(old[i:]) > t {
			at = i
			break
		}
		i += n
	}
	b := make([]byte, 0, len(old)+len(r.rec))
	b = append(b, old[:at]...)
	b = append(b, r.rec...)
	b = append(b, old[at:]...)
	z.nodes.set(r.name, b)
}

// removeRR removes one record equal to r from its owner name.
func (z *zone) removeRR(r ownerRR) {
	old, ok := z.nodes.get(r.name)
	if !ok {
		return
	}
	for i := 0; i < len(old); {
		n := recLen(old[i:])
		if string(old[i:i+n]) != string(r.rec) {
			i += n
			continue
		}
		if len(old) == n {
			z.nodes.del(r.name)
			z.walkAncestors(r.name, -1)
			return
		}
		b := make([]byte, 0, len(old)-n)
		b = append(b, old[:i]...)
		z.nodes.set(r.name, append(b, old[i+n:]...))
		return
	}
}

// walkAncestors counts name as a descendant of each of its ancestors.
func (z *zone) walkAncestors(name string, by int) {
	for i := 0; ; {
		j, end := dns.NextLabel(name, i)
		if end || j >= len(name) {
			return
		}
		z.ents.addCount(name[j:], by)
		i = j
	}
}

// zoneOf returns the longest served zone containing name (lower case,
// fully qualified), or "".
func (z *zone) zoneOf(name string) string {
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

func (z *zone) soa(zn string, serial uint32) *dns.SOA {
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
func (z *zone) negSOA(zn string) *dns.SOA {
	s := z.soa(zn, z.serial)
	s.Hdr.Ttl = min(s.Hdr.Ttl, s.Minttl)
	return s
}

func (z *zone) ns(zn string) []dns.RR {
	rrs := make([]dns.RR, len(z.cfg.NS))
	for i, n := range z.cfg.NS {
		rrs[i] = &dns.NS{Hdr: dns.RR_Header{Name: zn, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: z.b.ttl}, Ns: n}
	}
	return rrs
}

// result of a lookup.
type result struct {
	zone   string // "" outside every served zone
	rcode  int
	answer []dns.RR
	ns     []dns.RR
}

// lookup answers qname (lower case, fully qualified) and qtype.
func (z *zone) lookup(qname string, qtype uint16) result {
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
	recs, found := z.nodes.get(qname)
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
	for i := 0; i < len(recs); {
		n := recLen(recs[i:])
		if t := binary.BigEndian.Uint16(recs[i:]); t == qtype || qtype == dns.TypeANY {
			if r := unpackRec(qname, recs[i:i+n]); r != nil {
				res.answer = append(res.answer, r)
			}
		}
		i += n
	}
	if len(res.answer) > 0 {
		return res
	}
	res.ns = []dns.RR{z.negSOA(zn)}
	if !found && qname != zn && z.ents.count(qname) == 0 {
		res.rcode = dns.RcodeNameError
	}
	return res
}

// state returns whether the zone is synced and its serial.
func (z *zone) state() (bool, uint32) {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return z.synced, z.serial
}

// served returns the zones served, sorted.
func (z *zone) served() []string {
	z.mu.RLock()
	defer z.mu.RUnlock()
	out := make([]string, 0, len(z.zones))
	for zn := range z.zones {
		out = append(out, zn)
	}
	slices.Sort(out)
	return out
}

// xfr is the answer of a zone transfer: head, then the records of items
// (built as they are sent), then tail.
type xfr struct {
	head  []dns.RR
	items []xfrItem
	tail  []dns.RR
}

// xfrItem is the records of one name, as stored in zone.nodes (the value
// stays valid after the lock is released: blobMap never modifies one).
type xfrItem struct {
	name string
	recs []byte
}

// short reports whether x has one record at most.
func (x xfr) short() bool { return len(x.head)+len(x.items)+len(x.tail) <= 1 }

// chunks calls fn with the records of x, n at a time, until fn returns
// false. The records of items are built per chunk, so that a transfer of
// a large zone does not hold them all at once.
func (x xfr) chunks(n int, fn func([]dns.RR) bool) {
	buf := make([]dns.RR, 0, n)
	emit := func(r dns.RR) bool {
		buf = append(buf, r)
		if len(buf) < n {
			return true
		}
		ok := fn(buf)
		buf = buf[:0]
		return ok
	}
	for _, r := range x.head {
		if !emit(r) {
			return
		}
	}
	for _, it := range x.items {
		for i := 0; i < len(it.recs); {
			l := recLen(it.recs[i:])
			if r := unpackRec(it.name, it.recs[i:i+l]); r != nil && !emit(r) {
				return
			}
			i += l
		}
	}
	for _, r := range x.tail {
		if !emit(r) {
			return
		}
	}
	if len(buf) > 0 {
		fn(buf)
	}
}

// all returns every record of x.
func (x xfr) all() []dns.RR {
	var out []dns.RR
	x.chunks(xfrChunk, func(rrs []dns.RR) bool {
		out = append(out, rrs...)
		return true
	})
	return out
}

// axfr returns the whole zone zn: SOA, NS, every record, SOA.
func (z *zone) axfr(zn string) []dns.RR { return z.axfrStream(zn).all() }

func (z *zone) axfrStream(zn string) xfr {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return z.axfrLocked(zn)
}

func (z *zone) axfrLocked(zn string) xfr {
	soa := z.soa(zn, z.serial)
	x := xfr{head: append([]dns.RR{soa}, z.ns(zn)...), tail: []dns.RR{soa}}
	z.nodes.each(func(k, v []byte) {
		// A view of the key, not a copy: most names of the other zones
		// are skipped without an allocation.
		if z.zoneOf(unsafe.String(unsafe.SliceData(k), len(k))) == zn {
			x.items = append(x.items, xfrItem{name: string(k), recs: v})
		}
	})
	slices.SortFunc(x.items, func(a, b xfrItem) int { return strings.Compare(a.name, b.name) })
	return x
}

// ixfr returns the IXFR answer for a client at serial from: the current
// SOA alone when it is up to date, the deltas since from when the history
// holds them, or else the whole zone (RFC 1995 section 4).
func (z *zone) ixfr(zn string, from uint32) []dns.RR { return z.ixfrStream(zn, from).all() }

func (z *zone) ixfrStream(zn string, from uint32) xfr {
	z.mu.RLock()
	defer z.mu.RUnlock()
	cur := z.soa(zn, z.serial)
	if !serialGreater(z.serial, from) {
		return xfr{head: []dns.RR{cur}}
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
	return xfr{head: append(out, cur)}
}

func (z *zone) appendIn(out []dns.RR, zn string, rrs []dns.RR) []dns.RR {
	for _, r := range rrs {
		if z.zoneOf(r.Header().Name) == zn {
			out = append(out, r)
		}
	}
	return out
}

// takeDirty returns the zones changed since the last call, sorted.
func (z *zone) takeDirty() []string {
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
