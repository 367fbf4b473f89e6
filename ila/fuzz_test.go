package ila

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func FuzzParseIdentifier(f *testing.F) {
	for _, s := range []string{"2000:0:0:1", "ffff:ffff:ffff:ffff", "2000000000000001", "", ":::", "1:2:3:4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentifier(s)
		if err != nil {
			return
		}
		back, err := ParseIdentifier(id.String())
		if err != nil || back != id {
			t.Fatalf("%q -> %v -> %v, %v", s, id, back, err)
		}
		if h, err := ParseIdentifier(id.Hex()); err != nil || h != id {
			t.Fatalf("hex form %q -> %v, %v", id.Hex(), h, err)
		}
	})
}

func FuzzParseLocator(f *testing.F) {
	for _, s := range []string{"2001:0:87:0", "2001:0:87::/64", "::/64", "1.2.3.4/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLocator(s)
		if err != nil {
			return
		}
		if back, err := ParseLocator(l.String()); err != nil || back != l {
			t.Fatalf("%q -> %v -> %v, %v", s, l, back, err)
		}
		if back, err := ParseLocator(l.Prefix().String()); err != nil || back != l {
			t.Fatalf("prefix form %v -> %v, %v", l.Prefix(), back, err)
		}
	})
}

func FuzzParseSIRPrefix(f *testing.F) {
	for _, s := range []string{"3333:0:0:1::/64", "3333::/48", "::ffff:1.2.3.4/64", "fe80::%x/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSIRPrefix(s)
		if err != nil {
			return
		}
		if back, err := ParseSIRPrefix(p.String()); err != nil || back != p {
			t.Fatalf("%q -> %v -> %v, %v", s, p, back, err)
		}
	})
}

func FuzzParseText(f *testing.F) {
	for _, s := range []string{"neutral-map", "02:00:00:00:00:01", "typed", "1m", "task-upsert", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := ParseCsumMode(s); err == nil && m.String() != s {
			t.Fatalf("mode %q -> %v", s, m)
		}
		m, err := ParseMAC(s)
		if want, werr := parseMACReplacer(s); m != want || (err == nil) != (werr == nil) {
			t.Fatalf("mac %q -> %v, %v; the strings.Replacer parser: %v, %v", s, m, err, want, werr)
		}
		if err == nil {
			if back, err := ParseMAC(m.String()); err != nil || back != m {
				t.Fatalf("mac %q -> %v -> %v", s, m, back)
			}
		}
		var fm Format
		_ = fm.UnmarshalText([]byte(s))
		var d Duration
		_ = d.UnmarshalText([]byte(s))
		var et EventType
		if et.UnmarshalText([]byte(s)) == nil && et.String() != s {
			t.Fatalf("event type %q -> %v", s, et)
		}
	})
}

// FuzzTranslate: for any address, locator and mode, translation either
// refuses with an error or round-trips, and the neutral modes keep the
// address sum.
func FuzzTranslate(f *testing.F) {
	f.Add(uint64(0x3333_0000_0000_0001), uint64(0x2000_0000_0001_0087), uint64(0x2001_0000_0087_0000), uint8(1))
	f.Add(uint64(0x3333_0000_0000_0001), uint64(0x2000_0000_0001_0000), uint64(0x2001_0000_0087_0000), uint8(3))
	f.Add(uint64(0), uint64(0xffff_ffff_ffff_ffff), uint64(0xffff_ffff_ffff_ffff), uint8(0))
	f.Fuzz(func(t *testing.T, p, id, loc uint64, mode uint8) {
		m := CsumMode(mode)
		sir := SIRPrefix(p).Addr(Identifier(id))
		a, err := SIRToILA(sir, Locator(loc), m)
		if err != nil {
			if m.Valid() && CheckIdentifier(Identifier(id), m) == nil {
				t.Fatalf("valid input refused: %v", err)
			}
			return
		}
		back, err := ILAToSIR(a, SIRPrefix(p), m)
		if err != nil || back != sir {
			t.Fatalf("%v %v: %v -> %v -> %v (%v)", m, Locator(loc), sir, a, back, err)
		}
		if m.Neutral() && !eq1(AddrSum(sir), AddrSum(a)) {
			t.Fatalf("%v: sum changed %v -> %v", m, sir, a)
		}
		// ILAToSIR on arbitrary input never panics.
		_, _ = ILAToSIR(SIRPrefix(loc).Addr(Identifier(id)), SIRPrefix(p), m)
	})
}

// FuzzTransport: AdjustTransport on arbitrary bytes never panics and, for
// a packet whose checksum was valid, yields a valid checksum for the new
// destination.
func FuzzTransport(f *testing.F) {
	f.Add(uint8(ProtoTCP), make([]byte, 20), uint64(1), uint64(2))
	f.Add(uint8(ProtoUDP), []byte{0, 1, 0, 2, 0, 8, 0, 0}, uint64(3), uint64(4))
	f.Add(uint8(ProtoICMPv6), []byte{128, 0, 0, 0, 0, 1, 0, 1}, uint64(5), uint64(6))
	f.Fuzz(func(t *testing.T, proto uint8, pkt []byte, from, to uint64) {
		src := netip.MustParseAddr("3333:0:0:1::1")
		a := SIRPrefix(from).Addr(Identifier(to))
		b := SIRPrefix(to).Addr(Identifier(from))
		_, _ = TransportChecksum(proto, src, a, pkt)
		_ = VerifyTransportChecksum(proto, src, a, pkt)
		if err := SetTransportChecksum(proto, src, a, pkt); err != nil {
			_ = AdjustTransport(proto, a, b, pkt)
			return
		}
		if proto == ProtoUDP && binary.BigEndian.Uint16(pkt[6:]) == 0 {
			t.Fatal("UDP checksum set to 0")
		}
		if err := AdjustTransport(proto, a, b, pkt); err != nil {
			t.Fatal(err)
		}
		if !VerifyTransportChecksum(proto, src, b, pkt) {
			t.Fatalf("proto %d: checksum invalid after adjust", proto)
		}
	})
}

// parseMACReplacer is ParseMAC as it was written before it stopped
// building a strings.Replacer per call: FuzzParseText checks both agree.
func parseMACReplacer(s string) (MAC, error) {
	var m MAC
	t := strings.NewReplacer(":", "", "-", "").Replace(s)
	if len(t) != 12 || len(s) != 17 {
		return m, errors.New("length")
	}
	if _, err := hex.Decode(m[:], []byte(t)); err != nil {
		return m, err
	}
	return m, nil
}
