//go:build linux

package l2compat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

type port struct {
	info     portInfo
	link     netlink.Link
	conns    []*packet.Conn
	done     atomic.Bool // sockets closed
	stopping atomic.Bool // removed; frames still read are dropped
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
		// handlers run after the bridge consumed them); a socket filter,
		// attached before the socket is bound, keeps ARP and RARP from
		// the task side.
		c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: arpFromTasks})
		if err != nil {
			return fmt.Errorf("listen on %s: %w", ifname, err)
		}
		p.conns = append(p.conns, c)
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
// sends (not PACKET_OUTGOING: what the NVE sends out of the port). Socket
// filters in this module are written with x/net/bpf, attached before the
// socket is bound, and drop the host's own frames themselves (as ndemu's
// ndFilter).
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
