//go:build linux

package l2compat

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
)

// Apply feeds one mapping watch event. Task events for IPv4 tenant tasks
// (vn-ipv4 identifiers, or VNI and IPv4 set) and NVE events (VTEP addresses)
// change the programmed state at once; EventSynced re-checks everything;
// other events are ignored. An error reports netlink operations that failed;
// they are retried by Run.
func (m *Manager) Apply(ev ila.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("l2compat: manager closed")
	}
	now := time.Now()
	var errs []error
	switch ev.Type {
	case ila.EventTaskUpsert, ila.EventTaskDelete:
		if ev.Task == nil {
			return fmt.Errorf("l2compat: %v event without task", ev.Type)
		}
		e, ok := taskEntry(ev.Task)
		id := ev.Task.Identifier
		if ok {
			id = e.ID
		} else {
			m.st.ignoredTasks.Add(1)
		}
		m.dirMu.Lock()
		old, had := m.dir.remove(id)
		if ok && ev.Type == ila.EventTaskUpsert {
			m.dir.upsert(e)
		}
		m.dirMu.Unlock()
		// The mapping has spoken: a pending claim is settled. An update
		// that leaves the task where it was (a refresh, a standby
		// registration) is no answer to the claim.
		same := had && ok && ev.Type == ila.EventTaskUpsert && old.NVE == e.NVE && old.MAC == e.MAC && old.VNI == e.VNI
		if had && !same {
			delete(m.claimed, fdbKey{old.VNI, old.MAC})
		}
		if ok && !same {
			delete(m.claimed, fdbKey{e.VNI, e.MAC})
		}
		if had {
			errs = append(errs, m.syncEntry(old, now)...)
		}
		if ok {
			errs = append(errs, m.syncEntry(e, now)...)
			if until, inflight := e.inFlight(m.cfg.NVE, now); inflight {
				m.setNext(until)
			}
			if ev.Type == ila.EventTaskUpsert {
				m.probe(e, "")
			}
		}
		errs = append(errs, m.gcVNIs()...)
	case ila.EventNVEUpsert, ila.EventNVEDelete:
		if ev.NVE == nil {
			return fmt.Errorf("l2compat: %v event without nve", ev.Type)
		}
		m.dirMu.Lock()
		prev := m.dir.nves[ev.NVE.Name]
		if ev.Type == ila.EventNVEUpsert && ev.NVE.Underlay.IsValid() {
			m.dir.nves[ev.NVE.Name] = ev.NVE.Underlay.Unmap()
		} else {
			delete(m.dir.nves, ev.NVE.Name)
		}
		changed := prev != m.dir.nves[ev.NVE.Name]
		m.dirMu.Unlock()
		if changed {
			for _, e := range m.dir.tasks {
				if e.NVE == ev.NVE.Name {
					errs = append(errs, m.syncEntry(e, now)...)
				}
			}
			errs = append(errs, m.gcVNIs()...)
		}
	case ila.EventSynced:
		errs = m.syncAll(now)
	}
	return errors.Join(errs...)
}

func (m *Manager) setNext(t time.Time) {
	if m.next.IsZero() || t.Before(m.next) {
		m.next = t
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// active reports whether this NVE has task-facing ports in tenant vni.
func (m *Manager) active(vni uint32) bool {
	d := m.vnis[vni]
	return d != nil && d.ports > 0
}

// syncEntry brings the FDB and neighbour entries of e's keys in line.
func (m *Manager) syncEntry(e entry, now time.Time) []error {
	var errs []error
	if !e.MAC.IsZero() {
		if err := m.syncFDB(fdbKey{e.VNI, e.MAC}, now); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.syncNeigh(neighKey{e.VNI, e.IP}); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// syncAll re-checks every key and recomputes the next in-flight deadline.
func (m *Manager) syncAll(now time.Time) []error {
	var errs []error
	keys := make(map[fdbKey]bool, len(m.fdb)+len(m.dir.byMAC))
	for k := range m.fdb {
		keys[k] = true
	}
	for k := range m.dir.byMAC {
		keys[k] = true
	}
	for k := range keys {
		if err := m.syncFDB(k, now); err != nil {
			errs = append(errs, err)
		}
	}
	nkeys := make(map[neighKey]bool, len(m.neigh)+len(m.dir.byIP))
	for k := range m.neigh {
		nkeys[k] = true
	}
	for k := range m.dir.byIP {
		nkeys[k] = true
	}
	for k := range nkeys {
		if err := m.syncNeigh(k); err != nil {
			errs = append(errs, err)
		}
	}
	m.next = time.Time{}
	for k, until := range m.claimed {
		if !until.After(now) {
			errs = append(errs, m.lapseClaim(k, now)...)
		} else {
			m.setNext(until)
		}
	}
	for _, e := range m.dir.tasks {
		if until, ok := e.inFlight(m.cfg.NVE, now); ok {
			m.setNext(until)
		}
	}
	errs = append(errs, m.gcVNIs()...)
	m.retry = len(errs) > 0
	return errs
}

func (m *Manager) wantFDB(k fdbKey, now time.Time) (fdbEntry, bool) {
	e, ok := m.dir.lookupMAC(k.VNI, k.MAC)
	if !ok {
		return fdbEntry{}, false
	}
	return decideFDB(m.cfg.NVE, e, m.dir.nves[e.NVE], m.active(k.VNI), m.seen[k], m.claimed[k].After(now), now)
}

func (m *Manager) syncFDB(k fdbKey, now time.Time) error {
	want, ok := m.wantFDB(k, now)
	if ok && want.Port != "" && m.ports[want.Port] == nil {
		ok = false
	}
	have, had := m.fdb[k]
	switch {
	case ok && had && want == have:
		return nil
	case ok:
		if err := m.programFDB(k, have, had, want); err != nil {
			m.failed()
			return err
		}
	case had:
		if err := m.removeFDB(k, have); err != nil {
			m.failed()
			return err
		}
	}
	return nil
}

func (m *Manager) failed() {
	m.st.netlinkErrors.Add(1)
	if !m.retry {
		m.retry = true
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// bridgeFDB is a static bridge FDB entry. Sticky: a frame from another port
// with that source MAC (a task spoofing another's MAC) does not move it.
func bridgeFDB(link int, mac ila.MAC) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: link, Family: unix.AF_BRIDGE, State: netlink.NUD_NOARP,
		Flags: netlink.NTF_MASTER | netlink.NTF_STICKY, HardwareAddr: net.HardwareAddr(mac[:])}
}

func vxlanFDB(link int, mac ila.MAC, dst net.IP) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: link, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, HardwareAddr: net.HardwareAddr(mac[:]), IP: dst}
}

func ignoreNotFound(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}

func (m *Manager) programFDB(k fdbKey, have fdbEntry, had bool, want fdbEntry) error {
	d, err := m.ensureVNI(k.VNI)
	if err != nil {
		return err
	}
	if want.Remote.IsValid() {
		if err := m.h.NeighSet(vxlanFDB(d.vx.Attrs().Index, k.MAC, net.IP(want.Remote.AsSlice()))); err != nil {
			return fmt.Errorf("vxlan fdb %v dst %v on %s: %w", k.MAC, want.Remote, d.vx.Attrs().Name, err)
		}
		if err := m.h.NeighSet(bridgeFDB(d.vx.Attrs().Index, k.MAC)); err != nil {
			return fmt.Errorf("bridge fdb %v on %s: %w", k.MAC, d.vx.Attrs().Name, err)
		}
	} else {
		p := m.ports[want.Port]
		if err := m.h.NeighSet(bridgeFDB(p.info.Index, k.MAC)); err != nil {
			return fmt.Errorf("bridge fdb %v on %s: %w", k.MAC, want.Port, err)
		}
		if had && have.Remote.IsValid() {
			if err := ignoreNotFound(m.h.NeighDel(vxlanFDB(d.vx.Attrs().Index, k.MAC, net.IP(have.Remote.AsSlice())))); err != nil {
				return fmt.Errorf("delete vxlan fdb %v on %s: %w", k.MAC, d.vx.Attrs().Name, err)
			}
		}
	}
	m.st.fdbUpdates.Add(1)
	if had {
		d.fdb--
		if have.InFlight {
			d.inflight--
		}
	}
	d.fdb++
	if want.InFlight {
		d.inflight++
	}
	m.fdb[k] = want
	return m.setHairpin(d)
}

func (m *Manager) removeFDB(k fdbKey, have fdbEntry) error {
	d := m.vnis[k.VNI]
	if d != nil {
		if have.Remote.IsValid() {
			if err := ignoreNotFound(m.h.NeighDel(vxlanFDB(d.vx.Attrs().Index, k.MAC, net.IP(have.Remote.AsSlice())))); err != nil {
				return fmt.Errorf("delete vxlan fdb %v on %s: %w", k.MAC, d.vx.Attrs().Name, err)
			}
			if err := ignoreNotFound(m.h.NeighDel(bridgeFDB(d.vx.Attrs().Index, k.MAC))); err != nil {
				return fmt.Errorf("delete bridge fdb %v on %s: %w", k.MAC, d.vx.Attrs().Name, err)
			}
		} else if p := m.ports[have.Port]; p != nil {
			if err := ignoreNotFound(m.h.NeighDel(bridgeFDB(p.info.Index, k.MAC))); err != nil {
				return fmt.Errorf("delete bridge fdb %v on %s: %w", k.MAC, have.Port, err)
			}
		}
		d.fdb--
		if have.InFlight {
			d.inflight--
		}
	}
	m.st.fdbDeletes.Add(1)
	delete(m.fdb, k)
	if d != nil {
		return m.setHairpin(d)
	}
	return nil
}

func (m *Manager) syncNeigh(k neighKey) error {
	var want ila.MAC
	ok := false
	if id, found := m.dir.byIP[k]; found {
		want, ok = decideNeigh(m.cfg.NVE, m.dir.tasks[id], m.active(k.VNI))
	}
	have, had := m.neigh[k]
	d := m.vnis[k.VNI]
	switch {
	case ok && had && want == have:
	case ok:
		if d == nil {
			return nil // only active tenants get neighbour entries
		}
		n := &netlink.Neigh{LinkIndex: d.vx.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: net.IP(k.IP.AsSlice()), HardwareAddr: net.HardwareAddr(want[:])}
		if err := m.h.NeighSet(n); err != nil {
			m.failed()
			return fmt.Errorf("neighbour %v lladdr %v on %s: %w", k.IP, want, d.vx.Attrs().Name, err)
		}
		if !had {
			d.neigh++
		}
		m.neigh[k] = want
		m.st.neighUpdates.Add(1)
	case had:
		if d != nil {
			n := &netlink.Neigh{LinkIndex: d.vx.Attrs().Index, Family: unix.AF_INET, IP: net.IP(k.IP.AsSlice())}
			if err := ignoreNotFound(m.h.NeighDel(n)); err != nil {
				m.failed()
				return fmt.Errorf("delete neighbour %v on %s: %w", k.IP, d.vx.Attrs().Name, err)
			}
			d.neigh--
		}
		delete(m.neigh, k)
		m.st.neighDeletes.Add(1)
	}
	return nil
}
