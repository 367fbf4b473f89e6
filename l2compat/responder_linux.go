//go:build linux

package l2compat

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mdlayher/packet"

	"github.com/ilamesh/ilamesh/ila"
)

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
	var was string
	if !v.Sender.IsZero() {
		was = m.seen[fdbKey{p.info.VNI, v.Sender}]
		moved = was != p.info.Name
	}
	m.dirMu.RUnlock()
	if moved && was != "" && m.attached(was) {
		// The MAC lives behind another task-facing port that is still
		// attached: a task sending with its neighbour's MAC must not take
		// the neighbour's traffic. The port it was seen on keeps it until
		// that port is removed.
		moved = false
		if v.Act == actGratuitous || v.Act == actRefresh {
			v.Act, v.Moved = actSpoofed, false
			v.Reason = fmt.Sprintf("mac %v lives behind port %s", v.Sender, was)
		}
	}
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
		until := time.Now().Add(m.cfg.ClaimTimeout)
		m.claimed[k] = until
		m.setNext(until)
	}
	m.dirMu.Lock()
	m.seen[k] = p.info.Name
	m.dirMu.Unlock()
	if err := m.syncFDB(k, time.Now()); err != nil {
		m.log.Warn("l2compat: program local fdb", "iface", p.info.Name, "mac", mac, "err", err)
	}
}

// attached reports whether ifname is a task-facing port of this Manager.
func (m *Manager) attached(ifname string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ports[ifname] != nil
}

// settleClaim forgets a refused or dropped claim: the mapping decides again
// where the MAC goes.
func (m *Manager) settleClaim(c Claim) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := fdbKey{c.VNI, c.MAC}
	if _, ok := m.claimed[k]; !ok {
		return
	}
	if err := errors.Join(m.lapseClaim(k, time.Now())...); err != nil {
		m.log.Warn("l2compat: revert claimed fdb", "mac", c.MAC, "err", err)
	}
}

// lapseClaim drops the pending claim for k and the port its MAC was seen on
// unless the mapping places the MAC here, then re-programs k: local delivery
// installed for the claim goes back to what the mapping says. Callers hold
// mu.
func (m *Manager) lapseClaim(k fdbKey, now time.Time) []error {
	delete(m.claimed, k)
	if e, ok := m.dir.lookupMAC(k.VNI, k.MAC); !ok || e.NVE != m.cfg.NVE {
		m.dirMu.Lock()
		delete(m.seen, k)
		m.dirMu.Unlock()
	}
	if err := m.syncFDB(k, now); err != nil {
		return []error{err}
	}
	return nil
}
