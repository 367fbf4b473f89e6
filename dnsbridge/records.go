package dnsbridge

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// contrib is what one store record (a task, an NVE, a domain, the static
// configuration) puts into the zone: resource records and the zones it
// makes the server authoritative for.
type contrib struct {
	rrs   []dns.RR
	zones []string
}

// builder turns store records into resource records.
type builder struct {
	apex string
	ttl  uint32
	// deriveV4 serves the /24 of every tenant IPv4 address as a reverse
	// zone (no ReverseV4 configured).
	deriveV4 bool
}

// label lower-cases s and reports whether it is usable as one DNS label
// (letters, digits, '-' and '_', 1 to 63 characters).
func label(s string) (string, bool) {
	if len(s) == 0 || len(s) > 63 {
		return "", false
	}
	s = strings.ToLower(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return "", false
		}
	}
	return s, true
}

func (b builder) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: b.ttl}
}

func (b builder) addr(name string, a netip.Addr) dns.RR {
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		return &dns.A{Hdr: b.hdr(name, dns.TypeA), A: v[:]}
	}
	v := a.As16()
	return &dns.AAAA{Hdr: b.hdr(name, dns.TypeAAAA), AAAA: v[:]}
}

func (b builder) txt(name string, ss []string) dns.RR {
	for i, s := range ss {
		if len(s) > 255 {
			ss[i] = s[:255]
		}
	}
	return &dns.TXT{Hdr: b.hdr(name, dns.TypeTXT), Txt: ss}
}

func (b builder) ptr(a netip.Addr, target string) (dns.RR, bool) {
	name, err := dns.ReverseAddr(a.Unmap().String())
	if err != nil {
		return nil, false
	}
	return &dns.PTR{Hdr: b.hdr(name, dns.TypePTR), Ptr: target}, true
}

// taskName returns <name>.<tenant>.<apex> when both are valid labels.
func (b builder) taskName(t *ila.Task) (string, bool) {
	n, ok1 := label(t.Name)
	tn, ok2 := label(t.Tenant)
	if !ok1 || !ok2 || tn == "id" || tn == "nve" {
		return "", false
	}
	return n + "." + tn + "." + b.apex, true
}

func (b builder) idName(id ila.Identifier) string { return id.Hex() + ".id." + b.apex }

// task returns the records of a task; d is its domain when known. ok is
// false when the task's name or tenant cannot be a DNS label (its
// identifier records are still published).
func (b builder) task(t *ila.Task, d *ila.Domain) (c contrib, ok bool) {
	host, ok := b.taskName(t)
	idn := b.idName(t.Identifier)
	target := host
	if !ok {
		target = idn
	}
	sir := t.SIR.Unmap()
	if (!sir.IsValid() || !sir.Is6()) && d != nil {
		sir = d.SIR.Addr(t.Identifier)
	}
	if sir.IsValid() && sir.Is6() {
		if ok {
			c.rrs = append(c.rrs, b.addr(host, sir))
		}
		if p, pok := b.ptr(sir, target); pok {
			c.rrs = append(c.rrs, p)
		}
	}
	v4 := t.IPv4.Unmap()
	if v4.Is4() {
		if ok {
			c.rrs = append(c.rrs, b.addr(host, v4))
		}
		if p, pok := b.ptr(v4, target); pok {
			c.rrs = append(c.rrs, p)
		}
		if b.deriveV4 {
			c.zones = append(c.zones, reverseZone(netip.PrefixFrom(v4, 24)))
		}
	}
	// A task suspended by a cold or warm move has no usable locator
	// (draft-ietf-nvo3-vmm-03 section 4.2.1): no ILA address and no
	// locator in its TXT record until it registers at its destination.
	suspended := t.State == ila.StateSuspended
	if d != nil && !suspended {
		if a, err := t.Mapping(*d).ILAAddr(); err == nil {
			c.rrs = append(c.rrs, b.addr(idn, a))
		}
	}
	var txt []string
	if !suspended {
		txt = append(txt, "locator="+t.Locator.String(), "nve="+t.NVE)
	}
	c.rrs = append(c.rrs, b.txt(idn, append(txt,
		"version="+strconv.FormatInt(t.Version, 10),
		"state="+string(t.State),
		"domain="+t.Domain,
	)))
	return c, ok
}

// nve returns the records of an NVE; ok is false when its name cannot be a
// DNS label.
func (b builder) nve(n *ila.NVE) (c contrib, ok bool) {
	l, ok := label(n.Name)
	if !ok {
		return c, false
	}
	name := l + ".nve." + b.apex
	if u := n.Underlay.Unmap(); u.IsValid() {
		c.rrs = append(c.rrs, b.addr(name, u))
	}
	if len(n.Locators) > 0 {
		ss := make([]string, len(n.Locators))
		for i, loc := range n.Locators {
			ss[i] = "locator=" + loc.String()
		}
		c.rrs = append(c.rrs, b.txt(name, ss))
	}
	return c, true
}

// domain returns what a domain contributes: the ip6.arpa zone of its SIR
// prefix.
func (b builder) domain(d *ila.Domain) contrib {
	if d.SIR == 0 {
		return contrib{}
	}
	return contrib{zones: []string{reverseZone(d.SIR.Prefix())}}
}

// static returns the configured zones and the glue of in-zone NS names.
func (b builder) static(cfg Config) contrib {
	c := contrib{zones: []string{cfg.Zone}}
	for _, p := range cfg.ReverseV4 {
		c.zones = append(c.zones, reverseZone(p))
	}
	for _, p := range cfg.ReverseV6 {
		c.zones = append(c.zones, reverseZone(p))
	}
	for _, ns := range cfg.NS {
		if !dns.IsSubDomain(cfg.Zone, ns) {
			continue
		}
		for _, a := range cfg.NSAddrs {
			c.rrs = append(c.rrs, b.addr(ns, a))
		}
	}
	return c
}
