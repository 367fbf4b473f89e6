//go:build linux

package l2compat

import (
	"errors"
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
