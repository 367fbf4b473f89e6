package dnsbridge

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults applied to a zero Config field.
const (
	DefaultZone        = "ila.internal."
	DefaultTTL         = 5 * time.Second
	DefaultListen      = ":53"
	DefaultUDPSize     = 1232
	DefaultHistory     = 64
	DefaultNotifyDelay = 50 * time.Millisecond
)

// Config configures a Server. The zero value serves ila.internal. on :53
// with 5 s TTLs, no transfers, no NOTIFY and no rate limit.
type Config struct {
	// Zone is the apex of the forward zone; default DefaultZone.
	Zone string
	// TTL of every record; default DefaultTTL. Whole seconds.
	TTL time.Duration
	// NegativeTTL is the SOA MINIMUM (negative caching, RFC 2308);
	// default TTL.
	NegativeTTL time.Duration
	// Listen is the UDP and TCP address Run binds; default DefaultListen.
	// With port 0 both sockets share the port the UDP socket gets.
	Listen string
	// NS names published at every zone apex; default "ns.<Zone>". The
	// first one is the SOA MNAME.
	NS []string
	// NSAddrs are glue addresses published for NS names inside Zone.
	NSAddrs []netip.Addr
	// AllowTransfer lists the clients allowed AXFR/IXFR without TSIG.
	AllowTransfer []netip.Prefix
	// Notify lists the secondaries sent a NOTIFY when the zone changes.
	Notify []netip.AddrPort
	// NotifyDelay debounces NOTIFY: changes closer than this are announced
	// once; default DefaultNotifyDelay.
	NotifyDelay time.Duration
	// TSIG maps key names to base64 secrets. A request signed with one of
	// them may transfer the zone; signed queries get signed answers.
	TSIG map[string]string
	// RateLimit is the queries per second allowed per client address over
	// UDP (0: no limit); RateBurst the bucket size (default RateLimit, at
	// least 1). Queries over the limit are dropped.
	RateLimit float64
	RateBurst int
	// ReverseV4 lists the in-addr.arpa zones served for tenant IPv4
	// addresses (octet-aligned prefixes: /8, /16, /24). When empty, the /24
	// of every tenant address is served. ip6.arpa zones are always derived
	// from the domains' SIR /64 prefixes; ReverseV6 adds more (nibble-aligned).
	ReverseV4 []netip.Prefix
	ReverseV6 []netip.Prefix
	// UDPSize is the EDNS0 payload size this server accepts and advertises;
	// default DefaultUDPSize.
	UDPSize int
	// History bounds the IXFR deltas kept in memory; default DefaultHistory.
	History int
	// Logger receives the Run loop's messages; nil discards them.
	Logger *slog.Logger
}

// validate fills defaults into a copy and reports a configuration that
// cannot work.
func (c Config) validate() (Config, error) {
	if c.Zone == "" {
		c.Zone = DefaultZone
	}
	c.Zone = dns.CanonicalName(c.Zone)
	if _, ok := dns.IsDomainName(c.Zone); !ok || c.Zone == "." {
		return c, fmt.Errorf("zone %q: not a domain name", c.Zone)
	}
	// Host-name labels only (letters, digits, '-', '_'): a space or an
	// escape in a zone apex is a typo, not a zone anyone can query.
	for _, l := range dns.SplitDomainName(c.Zone) {
		if _, ok := label(l); !ok {
			return c, fmt.Errorf("zone %q: label %q: want letters, digits, '-' or '_'", c.Zone, l)
		}
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < time.Second || c.TTL > 24*time.Hour {
		return c, fmt.Errorf("ttl %s: want 1s to 24h", c.TTL)
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = c.TTL
	}
	if c.NegativeTTL < time.Second || c.NegativeTTL > 24*time.Hour {
		return c, fmt.Errorf("negative ttl %s: want 1s to 24h", c.NegativeTTL)
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if len(c.NS) == 0 {
		c.NS = []string{"ns." + c.Zone}
	}
	for i, n := range c.NS {
		n = dns.CanonicalName(n)
		if _, ok := dns.IsDomainName(n); !ok {
			return c, fmt.Errorf("ns %q: not a domain name", n)
		}
		c.NS[i] = n
	}
	for _, a := range c.NSAddrs {
		if !a.IsValid() {
			return c, fmt.Errorf("ns address: invalid")
		}
	}
	for _, p := range c.AllowTransfer {
		if !p.IsValid() {
			return c, fmt.Errorf("allow-transfer prefix: invalid")
		}
	}
	for _, a := range c.Notify {
		if !a.IsValid() || a.Port() == 0 {
			return c, fmt.Errorf("notify target %s: want address and port", a)
		}
	}
	if c.NotifyDelay == 0 {
		c.NotifyDelay = DefaultNotifyDelay
	}
	if c.NotifyDelay < 0 {
		return c, fmt.Errorf("notify delay %s: negative", c.NotifyDelay)
	}
	tsig := make(map[string]string, len(c.TSIG))
	for name, secret := range c.TSIG {
		n := dns.CanonicalName(name)
		if _, ok := dns.IsDomainName(n); !ok || n == "." {
			return c, fmt.Errorf("tsig key %q: not a domain name", name)
		}
		if _, err := base64.StdEncoding.DecodeString(secret); err != nil || secret == "" {
			return c, fmt.Errorf("tsig key %s: secret is not base64", n)
		}
		tsig[n] = secret
	}
	c.TSIG = tsig
	if c.RateLimit < 0 {
		return c, fmt.Errorf("rate limit %g: negative", c.RateLimit)
	}
	if c.RateBurst < 0 {
		return c, fmt.Errorf("rate burst %d: negative", c.RateBurst)
	}
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(c.RateLimit))
	}
	for _, p := range c.ReverseV4 {
		if !p.IsValid() || !p.Addr().Is4() || p.Bits()%8 != 0 || p.Bits() == 0 {
			return c, fmt.Errorf("reverse v4 zone %s: want an IPv4 prefix of /8, /16, /24 or /32", p)
		}
	}
	for _, p := range c.ReverseV6 {
		if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits()%4 != 0 || p.Bits() == 0 {
			return c, fmt.Errorf("reverse v6 zone %s: want a nibble-aligned IPv6 prefix", p)
		}
	}
	if c.UDPSize == 0 {
		c.UDPSize = DefaultUDPSize
	}
	if c.UDPSize < dns.MinMsgSize || c.UDPSize > dns.MaxMsgSize {
		return c, fmt.Errorf("udp size %d: want %d to %d", c.UDPSize, dns.MinMsgSize, dns.MaxMsgSize)
	}
	if c.History == 0 {
		c.History = DefaultHistory
	}
	if c.History < 0 {
		return c, fmt.Errorf("history %d: negative", c.History)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// reverseZone returns the in-addr.arpa or ip6.arpa name of an octet- or
// nibble-aligned prefix.
func reverseZone(p netip.Prefix) string {
	p = p.Masked()
	a := p.Addr()
	var b strings.Builder
	if a.Is4() {
		o := a.As4()
		for i := p.Bits()/8 - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "%d.", o[i])
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	o := a.As16()
	const hexd = "0123456789abcdef"
	for i := p.Bits()/4 - 1; i >= 0; i-- {
		v := o[i/2]
		if i%2 == 0 {
			v >>= 4
		}
		b.WriteByte(hexd[v&0xf])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}
