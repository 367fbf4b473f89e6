//go:build linux

package lab

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// resolver returns a resolver that asks the lab's DNS bridge over sockets
// opened in the control namespace.
func (l *Lab) resolver() (*net.Resolver, error) {
	ctl, err := l.node(l.topo.DNS.Netns)
	if err != nil {
		return nil, err
	}
	addr := l.topo.DNS.Addr
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var c net.Conn
		err := ctl.ns.Do(func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}, nil
}

// Lookup asks the DNS bridge for the AAAA and TXT records of name.
func (l *Lab) Lookup(ctx context.Context, name string) DNSAnswer {
	a := DNSAnswer{Name: name, At: time.Now()}
	r, err := l.resolver()
	if err != nil {
		a.Error = err.Error()
		return a
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ips, err := r.LookupIPAddr(ctx, name)
	if err != nil {
		a.Error = err.Error()
	}
	for _, ip := range ips {
		a.AAAA = append(a.AAAA, ip.IP.String())
	}
	if txt, err := l.lookupTXT(ctx, name); err == nil {
		a.TXT = txt
	}
	slices.Sort(a.AAAA)
	return a
}

// IDName is the DNS name of task's current ILA address.
func (task *Task) IDName() string { return fmt.Sprintf("%s.id.%s", task.Identifier.Hex(), Zone) }

// Name is the DNS name of task's SIR address.
func (task *Task) DNSName() string { return fmt.Sprintf("%s.%s.%s", task.Name, task.Tenant, Zone) }

// lookupTXT asks the DNS bridge for the TXT strings of name, keeping the
// strings apart (the Go resolver joins them).
func (l *Lab) lookupTXT(ctx context.Context, name string) ([]string, error) {
	ctl, err := l.node(l.topo.DNS.Netns)
	if err != nil {
		return nil, err
	}
	qn, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, err
	}
	id := uint16(time.Now().UnixNano())
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qn, Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET}}}
	b, err := q.Pack()
	if err != nil {
		return nil, err
	}
	var c net.Conn
	if err := ctl.ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "udp", l.topo.DNS.Addr)
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil {
		return nil, fmt.Errorf("dns answer: %w", err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("dns answer: id %d, want %d", m.ID, id)
	}
	var out []string
	for _, rr := range m.Answers {
		if t, ok := rr.Body.(*dnsmessage.TXTResource); ok {
			out = append(out, t.TXT...)
		}
	}
	return out, nil
}
