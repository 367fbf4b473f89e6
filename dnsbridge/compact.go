package dnsbridge

import (
	"encoding/binary"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// The compact zone keeps records in wire format. A record of a name (rec)
// is the part of the wire RR after the owner name, uncompressed: type,
// class, TTL, RDLENGTH (big endian, 10 bytes) and RDATA. Two records are
// the same when their owner names and recs are byte for byte equal.

const recHdr = 10

// recLen returns the length of the rec at the start of b.
func recLen(b []byte) int { return recHdr + int(binary.BigEndian.Uint16(b[8:])) }

// unpackRec builds the dns.RR of rec with owner name, or nil if it does
// not parse (never for a rec made by packOwnerRR).
func unpackRec(name string, rec []byte) dns.RR {
	h := dns.RR_Header{
		Name:     name,
		Rrtype:   binary.BigEndian.Uint16(rec),
		Class:    binary.BigEndian.Uint16(rec[2:]),
		Ttl:      binary.BigEndian.Uint32(rec[4:]),
		Rdlength: binary.BigEndian.Uint16(rec[8:]),
	}
	r, _, err := dns.UnpackRRWithHeader(h, rec, recHdr)
	if err != nil {
		return nil
	}
	return r
}

// ownerRR is one record an owner contributes.
type ownerRR struct {
	name string
	rec  []byte
}

func (r ownerRR) rtype() uint16 { return binary.BigEndian.Uint16(r.rec) }
func (r ownerRR) rr() dns.RR    { return unpackRec(r.name, r.rec) }

// packOwnerRR packs r; ok is false when it cannot be packed (such a record
// could not be sent in an answer either).
func packOwnerRR(r dns.RR) (ownerRR, bool) {
	buf := make([]byte, 2*dns.Len(r)+64)
	end, err := dns.PackRR(r, buf, 0, nil, false)
	if err != nil {
		return ownerRR{}, false
	}
	// Skip the owner name: uncompressed labels up to the root label.
	i := 0
	for i < end && buf[i] != 0 {
		i += int(buf[i]) + 1
	}
	i++
	if i+recHdr > end || recLen(buf[i:]) != end-i {
		return ownerRR{}, false
	}
	return ownerRR{name: r.Header().Name, rec: buf[i:end:end]}, true
}

func indexRR(rrs []ownerRR, r ownerRR) int {
	for i, x := range rrs {
		if x.name == r.name && string(x.rec) == string(r.rec) {
			return i
		}
	}
	return -1
}

// ownerBlob is what one owner contributes, as stored in zone.owners.
type ownerBlob struct {
	src   []byte // encodeTask of a task, nil for other owners
	zones []string
	rrs   []ownerRR
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (o ownerBlob) encode() []byte {
	b := appendBytes(nil, o.src)
	b = binary.AppendUvarint(b, uint64(len(o.zones)))
	for _, zn := range o.zones {
		b = appendString(b, zn)
	}
	for _, r := range o.rrs {
		b = appendString(b, r.name)
		b = appendBytes(b, r.rec)
	}
	return b
}

// reader reads what appendBytes and binary.Append* wrote; a short or bad
// input sets bad and yields zero values.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad, r.b = true, nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uint64() uint64 {
	if len(r.b) < 8 {
		r.bad, r.b = true, nil
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func decodeOwner(b []byte) ownerBlob {
	var o ownerBlob
	if len(b) == 0 {
		return o
	}
	r := reader{b: b}
	if src := r.bytes(); len(src) > 0 {
		o.src = src
	}
	nz := r.uvarint()
	for range min(nz, uint64(len(b))) {
		o.zones = append(o.zones, string(r.bytes()))
	}
	for len(r.b) > 0 && !r.bad {
		name := string(r.bytes())
		rec := r.bytes()
		if r.bad || len(rec) < recHdr || recLen(rec) != len(rec) {
			break
		}
		o.rrs = append(o.rrs, ownerRR{name: name, rec: rec})
	}
	return o
}

// encodeTask keeps the fields of a task the zone's records are made of
// (builder.task); decodeTask gives them back.
func encodeTask(t *ila.Task) []byte {
	b := make([]byte, 0, 64+len(t.Domain)+len(t.Name)+len(t.Tenant)+len(t.NVE)+len(t.State))
	for _, s := range []string{t.Domain, t.Name, t.Tenant, t.NVE, string(t.State)} {
		b = appendString(b, s)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(t.Identifier))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Locator))
	b = binary.AppendVarint(b, t.Version)
	for _, a := range []netip.Addr{t.SIR, t.IPv4} {
		ab, _ := a.MarshalBinary() // never fails
		b = appendBytes(b, ab)
	}
	return b
}

func decodeTask(b []byte) (ila.Task, bool) {
	r := reader{b: b}
	var t ila.Task
	t.Domain = string(r.bytes())
	t.Name = string(r.bytes())
	t.Tenant = string(r.bytes())
	t.NVE = string(r.bytes())
	t.State = ila.State(r.bytes())
	t.Identifier = ila.Identifier(r.uint64())
	t.Locator = ila.Locator(r.uint64())
	t.Version = r.varint()
	for _, a := range []*netip.Addr{&t.SIR, &t.IPv4} {
		if err := a.UnmarshalBinary(r.bytes()); err != nil {
			return ila.Task{}, false
		}
	}
	return t, !r.bad && len(r.b) == 0
}
