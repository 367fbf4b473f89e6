package dnsbridge

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// xfrChunk is the number of records per message of a zone transfer.
const xfrChunk = 200

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.queries.Add(1)
	client, udp := clientAddr(w)
	if udp && s.rl != nil && !s.rl.allow(client, time.Now()) {
		s.ratelimited.Add(1)
		return
	}
	tsig := r.IsTsig()
	tsigOK := tsig != nil && w.TsigStatus() == nil
	if len(r.Question) == 1 && !r.Response && r.Opcode == dns.OpcodeQuery &&
		(r.Question[0].Qtype == dns.TypeAXFR || r.Question[0].Qtype == dns.TypeIXFR) {
		s.transfer(w, r, client, udp, tsigOK)
		return
	}
	reserve := 0
	if tsigOK {
		// Room for the TSIG record added after truncation: owner name,
		// algorithm name, fixed fields and a SHA-512 MAC at most.
		reserve = len(tsig.Hdr.Name) + len(tsig.Algorithm) + 2 + 10 + 16 + 64 + 8
	}
	m := s.respond(r, udp, reserve)
	if m == nil {
		return
	}
	if tsig != nil {
		if tsigOK {
			m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, tsig.Fudge, time.Now().Unix())
		} else {
			// RFC 8945 section 5.2: unsigned NOTAUTH.
			m = new(dns.Msg).SetRcode(r, dns.RcodeNotAuth)
			m.Answer, m.Ns, m.Extra = nil, nil, nil
		}
	}
	_ = w.WriteMsg(m) // a client that went away is not our error
}

// respond builds the reply to a query. udp selects the size limit, less
// reserve bytes kept for a signature; nil means no reply at all (a
// response, not a request).
func (s *Server) respond(r *dns.Msg, udp bool, reserve int) *dns.Msg {
	if r.Response {
		return nil
	}
	m := new(dns.Msg)
	if len(r.Question) != 1 {
		s.formerr.Add(1)
		m.SetRcodeFormatError(r)
		return m
	}
	m.SetReply(r)
	m.RecursionDesired = r.RecursionDesired
	size := dns.MinMsgSize
	if !udp {
		size = dns.MaxMsgSize
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(uint16(s.cfg.UDPSize), false)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			s.formerr.Add(1)
			return m
		}
		if udp {
			size = max(dns.MinMsgSize, min(int(opt.UDPSize()), s.cfg.UDPSize))
		}
	}
	if r.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		s.notimp.Add(1)
		return m
	}
	q := r.Question[0]
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeAXFR, dns.TypeIXFR:
		m.Rcode = dns.RcodeFormatError
		s.formerr.Add(1)
		return m
	case dns.TypeMAILA, dns.TypeMAILB:
		m.Rcode = dns.RcodeNotImplemented
		s.notimp.Add(1)
		return m
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		s.refused.Add(1)
		return m
	}
	if _, ok := dns.IsDomainName(q.Name); !ok || !dns.IsFqdn(q.Name) {
		m.Rcode = dns.RcodeFormatError
		s.formerr.Add(1)
		return m
	}
	res := s.z.lookup(strings.ToLower(q.Name), q.Qtype)
	m.Rcode = res.rcode
	m.Authoritative = res.zone != "" && res.rcode != dns.RcodeServerFailure
	m.Answer, m.Ns = res.answer, res.ns
	switch res.rcode {
	case dns.RcodeSuccess:
		s.noerror.Add(1)
	case dns.RcodeNameError:
		s.nxdomain.Add(1)
	case dns.RcodeRefused:
		s.refused.Add(1)
	case dns.RcodeServerFailure:
		s.servfail.Add(1)
	}
	m.Truncate(max(dns.MinMsgSize, size-reserve))
	if m.Truncated {
		s.truncated.Add(1)
	}
	m.Compress = true
	return m
}

// transfer answers AXFR and IXFR (RFC 5936, RFC 1995).
func (s *Server) transfer(w dns.ResponseWriter, r *dns.Msg, client netip.Addr, udp, tsigOK bool) {
	q := r.Question[0]
	fail := func(rcode int) {
		m := new(dns.Msg).SetRcode(r, rcode)
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(uint16(s.cfg.UDPSize), false)
		}
		_ = w.WriteMsg(m)
	}
	if r.IsTsig() != nil && !tsigOK {
		s.refused.Add(1)
		fail(dns.RcodeNotAuth)
		return
	}
	if !tsigOK && !s.allowed(client) {
		s.refused.Add(1)
		fail(dns.RcodeRefused)
		return
	}
	zn := strings.ToLower(q.Name)
	if !containsZone(s.z.served(), zn) {
		s.refused.Add(1)
		fail(dns.RcodeNotAuth) // RFC 5936 section 2.2.1: not authoritative for it
		return
	}
	if synced, _ := s.z.state(); !synced {
		s.servfail.Add(1)
		fail(dns.RcodeServerFailure)
		return
	}
	var x xfr
	if q.Qtype == dns.TypeAXFR {
		if udp {
			s.formerr.Add(1)
			fail(dns.RcodeFormatError) // AXFR is TCP only (RFC 5936 section 4.2)
			return
		}
		x = s.z.axfrStream(zn)
	} else {
		var from uint32
		ok := false
		for _, rr := range r.Ns {
			if soa, isSOA := rr.(*dns.SOA); isSOA {
				from, ok = soa.Serial, true
			}
		}
		if !ok {
			s.formerr.Add(1)
			fail(dns.RcodeFormatError)
			return
		}
		x = s.z.ixfrStream(zn, from)
		if udp && !x.short() {
			// RFC 1995 section 2: the current SOA alone tells the client
			// to ask again over TCP.
			x = xfr{head: x.head[:1]}
		}
	}
	s.transfers.Add(1)
	tsig := r.IsTsig()
	x.chunks(xfrChunk, func(rrs []dns.RR) bool {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Compress = true
		m.Answer = rrs
		if tsigOK {
			m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, tsig.Fudge, time.Now().Unix())
		}
		if err := w.WriteMsg(m); err != nil {
			return false
		}
		w.TsigTimersOnly(true)
		return true
	})
}

func (s *Server) allowed(a netip.Addr) bool {
	for _, p := range s.cfg.AllowTransfer {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func containsZone(zones []string, zn string) bool {
	for _, z := range zones {
		if z == zn {
			return true
		}
	}
	return false
}
