package l2compat

import (
	"net/netip"
	"slices"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// MaxVNI is the largest VXLAN network identifier (24 bits). ILA VNIDs have 28
// bits; tasks with a larger VNID cannot be carried over VXLAN and are ignored.
const MaxVNI = 1<<24 - 1

// entry is what the layer-2 side needs of an IPv4 task.
type entry struct {
	ID       ila.Identifier
	VNI      uint32
	IP       netip.Addr
	MAC      ila.MAC
	NVE      string
	Previous []ila.Previous
	// Suspended: a cold or warm move of the task is under way; its address
	// is not used (no FDB or proxy entry points at it, ARP requests for it
	// get no answer) until it registers at its destination or the move is
	// rolled back.
	Suspended bool
}

// taskEntry extracts the IPv4 tenant view of t: from its vn-ipv4 identifier
// when it has one, else from its VNI and IPv4 fields. It reports false for
// tasks that are not IPv4 tenant tasks or whose VNI does not fit VXLAN.
func taskEntry(t *ila.Task) (entry, bool) {
	if t == nil {
		return entry{}, false
	}
	e := entry{ID: t.Identifier, MAC: t.MAC, NVE: t.NVE, Previous: t.Previous, Suspended: t.State == ila.StateSuspended}
	if vni, ok := t.Identifier.VNID(); ok && t.Identifier.Type() == ila.TypeVNIPv4 {
		e.VNI, e.IP = vni, t.Identifier.IPv4()
	} else if t.VNI != 0 && t.IPv4.Unmap().Is4() {
		e.VNI, e.IP = t.VNI, t.IPv4.Unmap()
		id, err := ila.NewVNIPv4(t.VNI, e.IP)
		if err != nil {
			return entry{}, false
		}
		e.ID = id
	} else {
		return entry{}, false
	}
	if e.VNI == 0 || e.VNI > MaxVNI || !e.IP.Is4() || e.IP.IsUnspecified() {
		return entry{}, false
	}
	return e, true
}

// inFlight reports whether self is a previous NVE of e whose in-flight timer
// is still running at now, and when the latest such timer ends.
func (e entry) inFlight(self string, now time.Time) (time.Time, bool) {
	var until time.Time
	for _, p := range e.Previous {
		if p.NVE == self && p.Until.After(now) && p.Until.After(until) {
			until = p.Until
		}
	}
	return until, !until.IsZero()
}

// fdbKey names one MAC in one tenant.
type fdbKey struct {
	VNI uint32
	MAC ila.MAC
}

// neighKey names one IPv4 address in one tenant.
type neighKey struct {
	VNI uint32
	IP  netip.Addr
}

// fdbEntry is where frames for a MAC go.
type fdbEntry struct {
	// Remote is the VTEP (underlay address) of the NVE the task is on; the
	// zero Addr for a local task.
	Remote netip.Addr
	// Port is the task-facing port a local task was seen on.
	Port string
	// InFlight is set when the entry exists (also) because this NVE is a
	// previous NVE of the task and its in-flight timer runs.
	InFlight bool
}

// decideFDB is the FDB entry this NVE (self) wants for task e. vtep is the
// underlay address of e's NVE (zero if unknown), active says whether self has
// task-facing ports in e's tenant, port is the local port e's MAC was seen on
// ("" if none). For a local task without a known port no static entry is
// wanted: the bridge learns it on the task-facing port. claimed says the task
// announced itself here (gratuitous ARP with its registered MAC) and the
// claim is pending: local delivery is installed before the mapping commits
// the move (make before break).
func decideFDB(self string, e entry, vtep netip.Addr, active bool, port string, claimed bool, now time.Time) (fdbEntry, bool) {
	if e.MAC.IsZero() {
		return fdbEntry{}, false
	}
	if claimed && port != "" {
		// The destination of a move (also of a suspended task: the claim
		// is its arrival) delivers locally before the commit.
		return fdbEntry{Port: port}, true
	}
	if e.Suspended {
		return fdbEntry{}, false
	}
	if e.NVE == self {
		if port == "" {
			return fdbEntry{}, false
		}
		return fdbEntry{Port: port}, true
	}
	if !vtep.IsValid() {
		return fdbEntry{}, false
	}
	_, inflight := e.inFlight(self, now)
	if !active && !inflight {
		return fdbEntry{}, false
	}
	return fdbEntry{Remote: vtep, InFlight: inflight}, true
}

// decideNeigh is the ARP proxy entry (IPv4 -> MAC on the VXLAN device) this
// NVE wants for e: remote tasks of tenants it has ports in.
func decideNeigh(self string, e entry, active bool) (ila.MAC, bool) {
	if e.MAC.IsZero() || e.NVE == self || !active || e.Suspended {
		return ila.MAC{}, false
	}
	return e.MAC, true
}

// directory is the tenant view of the mapping: tasks by identifier and the
// two lookups the responders need. It is not safe for concurrent use.
type directory struct {
	tasks map[ila.Identifier]entry
	byIP  map[neighKey]ila.Identifier
	// byMAC holds every task with a MAC, lowest identifier first: a VM may
	// hold several addresses of one tenant behind one MAC.
	byMAC map[fdbKey][]ila.Identifier
	nves  map[string]netip.Addr
}

func newDirectory() *directory {
	return &directory{
		tasks: make(map[ila.Identifier]entry),
		byIP:  make(map[neighKey]ila.Identifier),
		byMAC: make(map[fdbKey][]ila.Identifier),
		nves:  make(map[string]netip.Addr),
	}
}

// upsert stores e and returns the entry it replaced, if any.
func (d *directory) upsert(e entry) (entry, bool) {
	old, had := d.tasks[e.ID]
	if had {
		d.unindex(old)
	}
	d.tasks[e.ID] = e
	d.byIP[neighKey{e.VNI, e.IP}] = e.ID
	if !e.MAC.IsZero() {
		k := fdbKey{e.VNI, e.MAC}
		ids := d.byMAC[k]
		i, _ := slices.BinarySearch(ids, e.ID)
		d.byMAC[k] = slices.Insert(ids, i, e.ID)
	}
	return old, had
}

// remove deletes the task with identifier id and returns it.
func (d *directory) remove(id ila.Identifier) (entry, bool) {
	old, had := d.tasks[id]
	if !had {
		return entry{}, false
	}
	d.unindex(old)
	delete(d.tasks, id)
	return old, true
}

func (d *directory) unindex(e entry) {
	if d.byIP[neighKey{e.VNI, e.IP}] == e.ID {
		delete(d.byIP, neighKey{e.VNI, e.IP})
	}
	k := fdbKey{e.VNI, e.MAC}
	if i, ok := slices.BinarySearch(d.byMAC[k], e.ID); ok {
		d.byMAC[k] = slices.Delete(d.byMAC[k], i, i+1)
		if len(d.byMAC[k]) == 0 {
			delete(d.byMAC, k)
		}
	}
}

// lookupIP returns the task holding ip in tenant vni.
func (d *directory) lookupIP(vni uint32, ip netip.Addr) (entry, bool) {
	id, ok := d.byIP[neighKey{vni, ip}]
	if !ok {
		return entry{}, false
	}
	return d.tasks[id], true
}

// lookupMAC returns the task registered with mac in tenant vni (the one
// with the lowest identifier if the MAC holds several addresses).
func (d *directory) lookupMAC(vni uint32, mac ila.MAC) (entry, bool) {
	ids := d.byMAC[fdbKey{vni, mac}]
	if len(ids) == 0 {
		return entry{}, false
	}
	return d.tasks[ids[0]], true
}

// desired is the whole layer-2 state an NVE wants; the Manager computes the
// same thing key by key.
type desired struct {
	FDB   map[fdbKey]fdbEntry
	Neigh map[neighKey]ila.MAC
	// Next is the earliest in-flight deadline after now (zero if none).
	Next time.Time
}

// want computes the desired state of NVE self from the directory, the
// tenants it has ports in and the ports local MACs were seen on.
func (d *directory) want(self string, active map[uint32]bool, seen map[fdbKey]string, claimed map[fdbKey]bool, now time.Time) desired {
	w := desired{FDB: make(map[fdbKey]fdbEntry), Neigh: make(map[neighKey]ila.MAC)}
	for _, e := range d.tasks {
		if ids := d.byMAC[fdbKey{e.VNI, e.MAC}]; len(ids) > 0 && ids[0] == e.ID {
			if f, ok := decideFDB(self, e, d.nves[e.NVE], active[e.VNI], seen[fdbKey{e.VNI, e.MAC}], claimed[fdbKey{e.VNI, e.MAC}], now); ok {
				w.FDB[fdbKey{e.VNI, e.MAC}] = f
			}
		}
		if mac, ok := decideNeigh(self, e, active[e.VNI]); ok {
			w.Neigh[neighKey{e.VNI, e.IP}] = mac
		}
		if until, ok := e.inFlight(self, now); ok && (w.Next.IsZero() || until.Before(w.Next)) {
			w.Next = until
		}
	}
	return w
}
