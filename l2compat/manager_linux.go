//go:build linux

package l2compat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/net/bpf"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
)

// retryInterval is how soon Run retries netlink operations that failed.
const retryInterval = 2 * time.Second

// probeInterval is how often Run probes again for local tasks whose port is
// not known yet (their link may not have been up for the first probe).
const probeInterval = time.Second

// Manager programs the IPv4 tenants of one NVE and runs their ARP and RARP
// responders. Its methods are safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger
	ns  *netns.NS // nil: the current namespace
	h   *netlink.Handle

	// mu serialises changes of the state below and their netlink
	// programming.
	mu     sync.Mutex
	ports  map[string]*port
	vnis   map[uint32]*vniDev
	fdb    map[fdbKey]fdbEntry  // programmed
	neigh  map[neighKey]ila.MAC // programmed
	next   time.Time            // earliest in-flight deadline
	retry  bool                 // a netlink operation failed
	closed bool

	// dirMu guards dir and seen, read by the responders for every frame;
	// writers also hold mu.
	dirMu sync.RWMutex
	dir   *directory
	seen  map[fdbKey]string // local MAC -> task-facing port it was seen on

	claimed map[fdbKey]bool // moves announced here and not yet committed (mu)

	wake    chan struct{}
	claims  chan Claim
	readers sync.WaitGroup
	st      counters
}

type counters struct {
	arpRequests, arpAnswered, arpIgnored, gratuitous, claims, claimErrors,
	claimsDropped, spoofed, rarpRequests, rarpAnswered, rarpIgnored, malformed,
	fdbUpdates, fdbDeletes, neighUpdates, neighDeletes, netlinkErrors,
	ignoredTasks, probes atomic.Uint64
}

type vniDev struct {
	vni      uint32
	br, vx   netlink.Link
	ports    int
	fdb      int
	inflight int
	neigh    int
	hairpin  bool
}

type port struct {
	info     portInfo
	link     netlink.Link
	conns    []*packet.Conn
	done     atomic.Bool // sockets closed
	stopping atomic.Bool // removed; frames still read are dropped
}

// New checks cfg, opens the NVE's namespace and returns a Manager. Devices
// are created on demand (AddPort, or an in-flight entry); devices left by an
// earlier run with the same names are adopted.
func New(cfg Config) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	cfg.Underlay = cfg.Underlay.Unmap()
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		ports:   make(map[string]*port),
		vnis:    make(map[uint32]*vniDev),
		fdb:     make(map[fdbKey]fdbEntry),
		neigh:   make(map[neighKey]ila.MAC),
		dir:     newDirectory(),
		seen:    make(map[fdbKey]string),
		claimed: make(map[fdbKey]bool),
		wake:    make(chan struct{}, 1),
		claims:  make(chan Claim, 256),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if cfg.NetNS != "" {
		if m.ns, err = netns.Open(cfg.NetNS); err != nil {
			return nil, fmt.Errorf("l2compat: %w", err)
		}
		if m.h, err = m.ns.Handle(); err != nil {
			m.ns.Close()
			return nil, fmt.Errorf("l2compat: %w", err)
		}
	} else if m.h, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("l2compat: netlink handle: %w", err)
	}
	return m, nil
}

// do runs fn inside the NVE's namespace.
func (m *Manager) do(fn func() error) error {
	if m.ns == nil {
		return fn()
	}
	return m.ns.Do(fn)
}

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
		// The mapping has spoken: a pending claim is settled.
		if had {
			delete(m.claimed, fdbKey{old.VNI, old.MAC})
		}
		if ok {
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
	return decideFDB(m.cfg.NVE, e, m.dir.nves[e.NVE], m.active(k.VNI), m.seen[k], m.claimed[k], now)
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

// setHairpin lets frames arriving over VXLAN go back out over VXLAN only
// while in-flight entries exist in the tenant (limits transient loops).
func (m *Manager) setHairpin(d *vniDev) error {
	want := d.inflight > 0
	if want == d.hairpin {
		return nil
	}
	if err := m.h.LinkSetHairpin(d.vx, want); err != nil {
		return fmt.Errorf("hairpin %v on %s: %w", want, d.vx.Attrs().Name, err)
	}
	d.hairpin = want
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

func bridgeName(vni uint32) string { return fmt.Sprintf("l2br%d", vni) }
func vxlanName(vni uint32) string  { return fmt.Sprintf("l2vx%d", vni) }

// ensureVNI creates (or adopts) the bridge and VXLAN device of tenant vni.
func (m *Manager) ensureVNI(vni uint32) (*vniDev, error) {
	if d := m.vnis[vni]; d != nil {
		return d, nil
	}
	if vni == 0 || vni > MaxVNI {
		return nil, fmt.Errorf("vni %d: want 1 to %d", vni, MaxVNI)
	}
	brName, vxName := bridgeName(vni), vxlanName(vni)
	br, err := m.h.LinkByName(brName)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("bridge %s: %w", brName, err)
		}
		if err := m.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: brName, MTU: m.cfg.MTU}}); err != nil {
			return nil, fmt.Errorf("add bridge %s: %w", brName, err)
		}
		if br, err = m.h.LinkByName(brName); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", brName, err)
		}
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %s: exists as a %s device", brName, br.Type())
	}
	vx, err := m.h.LinkByName(vxName)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("vxlan %s: %w", vxName, err)
		}
		v := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: vxName, MTU: m.cfg.MTU},
			VxlanId:   int(vni),
			SrcAddr:   net.IP(m.cfg.Underlay.AsSlice()),
			Port:      int(m.cfg.Port),
			Learning:  false,
			Proxy:     true,
		}
		if err := m.h.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("add vxlan %s: %w", vxName, err)
		}
		if vx, err = m.h.LinkByName(vxName); err != nil {
			return nil, fmt.Errorf("vxlan %s: %w", vxName, err)
		}
	}
	if v, ok := vx.(*netlink.Vxlan); !ok || v.VxlanId != int(vni) {
		return nil, fmt.Errorf("vxlan %s: exists but is not vxlan id %d", vxName, vni)
	}
	if err := m.do(func() error {
		for _, name := range []string{brName, vxName} {
			if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6"), []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("disable ipv6 on %s/%s: %w", brName, vxName, err)
	}
	if err := m.h.LinkSetMaster(vx, br); err != nil {
		return nil, fmt.Errorf("enslave %s to %s: %w", vxName, brName, err)
	}
	if err := m.portFlags(vx, false); err != nil {
		return nil, err
	}
	if err := m.h.LinkSetHairpin(vx, false); err != nil {
		return nil, fmt.Errorf("hairpin off on %s: %w", vxName, err)
	}
	for _, l := range []netlink.Link{vx, br} {
		if err := m.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	d := &vniDev{vni: vni, br: br, vx: vx}
	m.vnis[vni] = d
	// Adopt FDB and neighbour entries left by an earlier run (an agent
	// restart keeps forwarding) so that the next sync removes stale ones.
	if old, err := m.h.NeighList(vx.Attrs().Index, unix.AF_INET); err == nil {
		for _, n := range old {
			ip, ok := netipFromIP(n.IP)
			if !ok || !ip.Is4() || len(n.HardwareAddr) != 6 || n.State&netlink.NUD_PERMANENT == 0 {
				continue
			}
			k := neighKey{vni, ip}
			if _, ok := m.neigh[k]; !ok {
				m.neigh[k] = ila.MAC(n.HardwareAddr)
				d.neigh++
			}
		}
	}
	if old, err := m.h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE); err == nil {
		for _, n := range old {
			var mac ila.MAC
			if len(n.HardwareAddr) != 6 || n.Flags&netlink.NTF_SELF == 0 || n.IP == nil {
				continue
			}
			copy(mac[:], n.HardwareAddr)
			if mac.IsZero() {
				continue
			}
			k := fdbKey{vni, mac}
			if _, ok := m.fdb[k]; !ok {
				if dst, ok := netipFromIP(n.IP); ok {
					m.fdb[k] = fdbEntry{Remote: dst}
					d.fdb++
				}
			}
		}
	}
	return d, nil
}

// portFlags sets a bridge port's flags: never flood unknown unicast,
// multicast or broadcast; learn only on task-facing ports.
func (m *Manager) portFlags(l netlink.Link, learning bool) error {
	name := l.Attrs().Name
	if err := m.h.LinkSetLearning(l, learning); err != nil {
		return fmt.Errorf("learning %v on %s: %w", learning, name, err)
	}
	if err := m.h.LinkSetFlood(l, false); err != nil {
		return fmt.Errorf("flood off on %s: %w", name, err)
	}
	idx := l.Attrs().Index
	return m.do(func() error {
		for _, a := range []int{nl.IFLA_BRPORT_MCAST_FLOOD, nl.IFLA_BRPORT_BCAST_FLOOD} {
			req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
			msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
			msg.Index = int32(idx)
			req.AddData(msg)
			pi := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
			pi.AddRtAttr(a, []byte{0})
			req.AddData(pi)
			if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
				return fmt.Errorf("bridge port flag %d off on %s: %w", a, name, err)
			}
		}
		return nil
	})
}

// gcVNIs removes the devices of tenants with no ports and no entries left.
func (m *Manager) gcVNIs() []error {
	var errs []error
	for vni, d := range m.vnis {
		if d.ports > 0 || d.fdb > 0 || d.neigh > 0 {
			continue
		}
		for _, l := range []netlink.Link{d.vx, d.br} {
			if err := ignoreNotFound(m.h.LinkDel(l)); err != nil {
				m.failed()
				errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			}
		}
		delete(m.vnis, vni)
	}
	return errs
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// AddPort attaches the task-facing port ifname (already in the NVE's
// namespace) to tenant vni: it joins the tenant's bridge with flooding off
// and the ARP and RARP responders start on it.
func (m *Manager) AddPort(ifname string, vni uint32) error {
	if vni == 0 || vni > MaxVNI {
		return fmt.Errorf("l2compat: port %s: vni %d: want 1 to %d", ifname, vni, MaxVNI)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("l2compat: manager closed")
	}
	if p := m.ports[ifname]; p != nil {
		if p.info.VNI == vni {
			return nil
		}
		return fmt.Errorf("l2compat: port %s is already in vni %d", ifname, p.info.VNI)
	}
	link, err := m.h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("l2compat: port %s: %w", ifname, err)
	}
	d, err := m.ensureVNI(vni)
	if err != nil {
		return fmt.Errorf("l2compat: port %s: %w", ifname, err)
	}
	if err := m.h.LinkSetMaster(link, d.br); err != nil {
		return fmt.Errorf("l2compat: enslave %s to %s: %w", ifname, d.br.Attrs().Name, err)
	}
	if err := m.portFlags(link, true); err != nil {
		return fmt.Errorf("l2compat: %w", err)
	}
	if err := m.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("l2compat: set %s up: %w", ifname, err)
	}
	a := link.Attrs()
	p := &port{link: link, info: portInfo{Name: ifname, Index: a.Index, VNI: vni}}
	copy(p.info.MAC[:], a.HardwareAddr)
	if err := m.do(func() error {
		ifi := &net.Interface{Index: a.Index, Name: a.Name, MTU: a.MTU, HardwareAddr: a.HardwareAddr}
		// A bridge port's frames reach only ETH_P_ALL taps (protocol
		// handlers run after the bridge consumed them); a socket filter
		// keeps ARP and RARP from the task side.
		c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", ifname, err)
		}
		p.conns = append(p.conns, c)
		if err := c.SetBPF(arpFromTasks); err != nil {
			return fmt.Errorf("filter on %s: %w", ifname, err)
		}
		return nil
	}); err != nil {
		for _, c := range p.conns {
			c.Close()
		}
		return fmt.Errorf("l2compat: %w", err)
	}
	m.ports[ifname] = p
	d.ports++
	for _, c := range p.conns {
		m.readers.Add(1)
		go m.read(p, c)
	}
	errs := m.syncAll(time.Now())
	for _, e := range m.dir.tasks {
		if e.VNI == vni {
			m.probe(e, ifname)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("l2compat: port %s: %w", ifname, errors.Join(errs...))
	}
	return nil
}

// probe looks for a local task whose port is not known yet: a unicast ARP
// probe (sender address 0.0.0.0, RFC 5227) for its address to its MAC out of
// the tenant's task-facing ports (only ifname if set). The task's reply
// tells the responder its port, which gets a static FDB entry. Nothing is
// broadcast. Callers hold mu.
func (m *Manager) probe(e entry, ifname string) {
	if e.NVE != m.cfg.NVE || e.MAC.IsZero() {
		return
	}
	m.dirMu.RLock()
	_, known := m.seen[fdbKey{e.VNI, e.MAC}]
	m.dirMu.RUnlock()
	if known {
		return
	}
	for name, p := range m.ports {
		if p.info.VNI != e.VNI || (ifname != "" && name != ifname) || len(p.conns) == 0 {
			continue
		}
		req := &arp.Packet{
			HardwareType: 1, ProtocolType: etherTypeIPv4, HardwareAddrLength: 6, IPLength: 4,
			Operation:          arp.OperationRequest,
			SenderHardwareAddr: net.HardwareAddr(p.info.MAC[:]),
			SenderIP:           netip.IPv4Unspecified(),
			TargetHardwareAddr: make(net.HardwareAddr, 6),
			TargetIP:           e.IP,
		}
		f := ethFrame(e.MAC, p.info.MAC, etherTypeARP, req)
		if _, err := p.conns[0].WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(e.MAC[:])}); err == nil {
			m.st.probes.Add(1)
		}
	}
}

// arpFromTasks is a socket filter that keeps ARP and RARP frames a task
// sends (not PACKET_OUTGOING: what the NVE sends out of the port).
var arpFromTasks = func() []bpf.RawInstruction {
	r, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeARP, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeRARP, SkipFalse: 3},
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 1},
		bpf.RetConstant{Val: 0x40000},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err) // static program
	}
	return r
}()

// RemovePort stops the responders on ifname and takes it out of its
// tenant's bridge. A port that has already left the namespace (a carried
// veth) is fine.
func (m *Manager) RemovePort(ifname string) error {
	p, err := m.removePort(ifname)
	if p != nil {
		// Closing an AF_PACKET socket waits for an RCU grace period
		// (milliseconds): not while holding mu, which Apply needs.
		p.close()
	}
	return err
}

func (m *Manager) removePort(ifname string) (*port, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.ports[ifname]
	if p == nil {
		return nil, fmt.Errorf("l2compat: port %s: not a task-facing port", ifname)
	}
	p.stopping.Store(true)
	delete(m.ports, ifname)
	d := m.vnis[p.info.VNI]
	if d != nil {
		d.ports--
	}
	var errs []error
	if link, err := m.h.LinkByIndex(p.info.Index); err == nil && link.Attrs().Name == ifname && d != nil && link.Attrs().MasterIndex == d.br.Attrs().Index {
		if err := m.h.LinkSetNoMaster(link); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", ifname, err))
		}
	}
	// The kernel drops the port's FDB entries with it.
	for k, f := range m.fdb {
		if f.Port == ifname {
			delete(m.fdb, k)
			if d := m.vnis[k.VNI]; d != nil {
				d.fdb--
			}
		}
	}
	m.dirMu.Lock()
	for k, name := range m.seen {
		if name == ifname {
			delete(m.seen, k)
		}
	}
	m.dirMu.Unlock()
	errs = append(errs, m.syncAll(time.Now())...)
	if err := errors.Join(errs...); err != nil {
		return p, fmt.Errorf("l2compat: remove port %s: %w", ifname, err)
	}
	return p, nil
}

func (p *port) close() {
	if p.done.Swap(true) {
		return
	}
	for _, c := range p.conns {
		c.Close()
	}
}

// read serves one responder socket until it is closed.
func (m *Manager) read(p *port, c *packet.Conn) {
	defer m.readers.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFrom(buf)
		if err == nil && p.stopping.Load() {
			continue
		}
		if err != nil {
			if p.done.Load() || p.stopping.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			m.log.Warn("l2compat: read", "iface", p.info.Name, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		m.handle(p, c, buf[:n])
	}
}

// handle applies one frame's verdict.
func (m *Manager) handle(p *port, c *packet.Conn, frame []byte) {
	m.dirMu.RLock()
	v := handleFrame(m.dir, m.cfg.NVE, p.info, frame)
	var moved bool
	if !v.Sender.IsZero() {
		moved = m.seen[fdbKey{p.info.VNI, v.Sender}] != p.info.Name
	}
	m.dirMu.RUnlock()
	switch v.Act {
	case actMalformed:
		m.st.malformed.Add(1)
	case actARPAnswer:
		m.st.arpRequests.Add(1)
		m.st.arpAnswered.Add(1)
	case actARPIgnore:
		m.st.arpRequests.Add(1)
		m.st.arpIgnored.Add(1)
	case actRARPAnswer:
		m.st.rarpRequests.Add(1)
		m.st.rarpAnswered.Add(1)
	case actRARPIgnore:
		m.st.rarpRequests.Add(1)
		m.st.rarpIgnored.Add(1)
	case actGratuitous, actRefresh:
		m.st.gratuitous.Add(1)
	case actSpoofed:
		m.st.gratuitous.Add(1)
		m.st.spoofed.Add(1)
		m.log.Warn("l2compat: spoofed gratuitous arp refused", "iface", p.info.Name, "vni", v.Claim.VNI,
			"ipv4", v.Claim.IPv4, "mac", v.Claim.MAC, "reason", v.Reason)
		if m.cfg.Spoofed != nil {
			m.cfg.Spoofed(v.Claim, v.Reason)
		}
	}
	if v.Reply != nil {
		if _, err := c.WriteTo(v.Reply, &packet.Addr{HardwareAddr: net.HardwareAddr(v.To[:])}); err != nil && !p.done.Load() {
			m.log.Warn("l2compat: send reply", "iface", p.info.Name, "err", err)
		}
	}
	if v.Moved || (moved && v.Act != actSpoofed) {
		m.noteSeen(p, v.Sender, v.Moved)
	}
	if v.Act == actGratuitous {
		select {
		case m.claims <- v.Claim:
		default:
			m.st.claimsDropped.Add(1)
			m.settleClaim(v.Claim)
		}
	}
}

// noteSeen records that mac lives behind port p and programs a static FDB
// entry for it if it is a local task, or one that announced its move here
// (claimed).
func (m *Manager) noteSeen(p *port, mac ila.MAC, claimed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.ports[p.info.Name] != p {
		return
	}
	k := fdbKey{p.info.VNI, mac}
	if claimed {
		m.claimed[k] = true
	}
	m.dirMu.Lock()
	m.seen[k] = p.info.Name
	m.dirMu.Unlock()
	if err := m.syncFDB(k, time.Now()); err != nil {
		m.log.Warn("l2compat: program local fdb", "iface", p.info.Name, "mac", mac, "err", err)
	}
}

// settleClaim forgets a refused or dropped claim: the mapping decides again
// where the MAC goes.
func (m *Manager) settleClaim(c Claim) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := fdbKey{c.VNI, c.MAC}
	if !m.claimed[k] {
		return
	}
	delete(m.claimed, k)
	if err := m.syncFDB(k, time.Now()); err != nil {
		m.log.Warn("l2compat: revert claimed fdb", "mac", c.MAC, "err", err)
	}
}

// Run serves claims (Config.Attach), expires in-flight entries and retries
// failed netlink operations until ctx is done; then it closes the Manager
// and returns nil. The responders run from AddPort on; Run stops them.
func (m *Manager) Run(ctx context.Context) error {
	defer m.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case c := <-m.claims:
				if m.cfg.Attach == nil {
					m.settleClaim(c)
					continue
				}
				m.st.claims.Add(1)
				if err := m.cfg.Attach(ctx, c); err != nil && ctx.Err() == nil {
					m.settleClaim(c)
					m.st.claimErrors.Add(1)
					m.log.Warn("l2compat: attach claim refused", "claim", c.String(), "err", err)
				}
			}
		}
	})
	g.Go(func() error {
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				m.mu.Lock()
				for _, e := range m.dir.tasks {
					m.probe(e, "")
				}
				m.mu.Unlock()
			}
		}
	})
	g.Go(func() error {
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		for {
			m.mu.Lock()
			d := time.Hour
			if !m.next.IsZero() {
				d = time.Until(m.next)
			}
			if m.retry && d > retryInterval {
				d = retryInterval
			}
			m.mu.Unlock()
			t.Reset(max(d, time.Millisecond))
			select {
			case <-ctx.Done():
				return nil
			case <-m.wake:
			case <-t.C:
				m.mu.Lock()
				if errs := m.syncAll(time.Now()); len(errs) > 0 {
					m.log.Warn("l2compat: sync", "err", errors.Join(errs...))
				}
				m.mu.Unlock()
			}
		}
	})
	return g.Wait()
}

// Close stops the responders and releases the namespace and netlink handle.
// The devices and entries stay (forwarding goes on with the last state); a
// new Manager adopts them. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	ports := slices.Collect(maps.Values(m.ports))
	m.mu.Unlock()
	for _, p := range ports {
		p.close()
	}
	m.readers.Wait()
	m.h.Close()
	if m.ns != nil {
		return m.ns.Close()
	}
	return nil
}

// Stats returns the counters and gauges.
func (m *Manager) Stats() Stats {
	s := Stats{
		ARPRequests: m.st.arpRequests.Load(), ARPAnswered: m.st.arpAnswered.Load(), ARPIgnored: m.st.arpIgnored.Load(),
		Gratuitous: m.st.gratuitous.Load(), Claims: m.st.claims.Load(), ClaimErrors: m.st.claimErrors.Load(),
		ClaimsDropped: m.st.claimsDropped.Load(), Spoofed: m.st.spoofed.Load(),
		RARPRequests: m.st.rarpRequests.Load(), RARPAnswered: m.st.rarpAnswered.Load(), RARPIgnored: m.st.rarpIgnored.Load(),
		Malformed: m.st.malformed.Load(), FDBUpdates: m.st.fdbUpdates.Load(), FDBDeletes: m.st.fdbDeletes.Load(),
		NeighUpdates: m.st.neighUpdates.Load(), NeighDeletes: m.st.neighDeletes.Load(),
		NetlinkErrors: m.st.netlinkErrors.Load(), IgnoredTasks: m.st.ignoredTasks.Load(), Probes: m.st.probes.Load(),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.FDBEntries, s.VNIs, s.Ports = len(m.fdb), len(m.vnis), len(m.ports)
	for _, f := range m.fdb {
		if f.InFlight {
			s.InFlightEntries++
		}
	}
	m.dirMu.RLock()
	s.Tasks = len(m.dir.tasks)
	m.dirMu.RUnlock()
	return s
}
