package ila

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
)

func TestParseIdentifier(t *testing.T) {
	tests := []struct {
		in   string
		want Identifier
		err  bool
	}{
		{"2000:0:0:1", 0x2000_0000_0000_0001, false},
		{"ffff:ffff:ffff:ffff", 0xffff_ffff_ffff_ffff, false},
		{"0:0:0:0", 0, false},
		{"2000000000000001", 0x2000_0000_0000_0001, false},
		{"", 0, true},
		{"2000:0:1", 0, true},
		{"2000:0:0:0:1", 0, true},
		{"2000::1", 0, true},
		{"12345:0:0:1", 0, true},
		{"g:0:0:1", 0, true},
		{"+1:0:0:1", 0, true},
		{"200000000000001", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseIdentifier(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseIdentifier(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseIdentifier(%q) error %v does not wrap ErrSyntax", tc.in, err)
		}
	}
}

func TestTextRoundTrip(t *testing.T) {
	id := Identifier(0x4000_0001_0a00_0005)
	if s := id.String(); s != "4000:1:a00:5" {
		t.Errorf("String = %q", s)
	}
	if h := id.Hex(); h != "400000010a000005" {
		t.Errorf("Hex = %q", h)
	}
	loc := Locator(0x2001_0000_0087_0000)
	if s := loc.String(); s != "2001:0:87:0" {
		t.Errorf("Locator String = %q", s)
	}
	type doc struct {
		ID   Identifier `json:"id"`
		Loc  Locator    `json:"loc"`
		SIR  SIRPrefix  `json:"sir"`
		Csum CsumMode   `json:"csum"`
		Fmt  Format     `json:"fmt"`
		MAC  MAC        `json:"mac"`
		D    Duration   `json:"d"`
	}
	in := doc{ID: id, Loc: loc, SIR: 0x3333_0000_0000_0001, Csum: CsumNeutralMapAuto, Fmt: FormatIID, MAC: MAC{2, 0, 0, 0, 0, 1}, D: Duration(90e9)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"4000:1:a00:5","loc":"2001:0:87:0","sir":"3333:0:0:1::/64","csum":"neutral-map-auto","fmt":"iid","mac":"02:00:00:00:00:01","d":"1m30s"}`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant   %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
}

func TestEventTypeText(t *testing.T) {
	for typ := EventTaskUpsert; typ <= EventSynced; typ++ {
		b, err := typ.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got EventType
		if err := got.UnmarshalText(b); err != nil || got != typ {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, got, err, typ)
		}
	}
	for _, s := range []string{"", "event-9", "Task-Upsert", "synced "} {
		var got EventType
		if err := got.UnmarshalText([]byte(s)); !errors.Is(err, ErrSyntax) {
			t.Errorf("UnmarshalText(%q) = %v, %v; want an ErrSyntax", s, got, err)
		}
	}
}

func TestParseLocatorAndPrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Locator
		err  bool
	}{
		{"2001:0:87:0", 0x2001_0000_0087_0000, false},
		{"2001:0:87::/64", 0x2001_0000_0087_0000, false},
		{"2001:0:87::/48", 0, true},
		{"2001:0:87::1/64", 0, true},
		{"10.0.0.0/8", 0, true},
		{"::ffff:0:0/64", 0, true},
		{"x", 0, true},
	} {
		got, err := ParseLocator(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseLocator(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in  string
		err bool
	}{
		{"3333:0:0:1::/64", false},
		{"3333:0:0:1::/63", true},
		{"3333:0:0:1::5/64", true},
		{"3333:0:0:1::", true},
		{"fe80::%eth0/64", true},
	} {
		_, err := ParseSIRPrefix(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseSIRPrefix(%q) err = %v", tc.in, err)
		}
	}
	if _, err := SIRPrefixFrom(netip.MustParsePrefix("3333::/48")); err == nil {
		t.Error("SIRPrefixFrom /48 accepted")
	}
	if p, err := SIRPrefixFrom(netip.MustParsePrefix("3333:0:0:1::/64")); err != nil || p != 0x3333_0000_0000_0001 {
		t.Errorf("SIRPrefixFrom = %v, %v", p, err)
	}
}

func TestParseMACAndModes(t *testing.T) {
	if m, err := ParseMAC("02:1a:00:00:00:01"); err != nil || m != (MAC{2, 0x1a, 0, 0, 0, 1}) {
		t.Errorf("ParseMAC = %v, %v", m, err)
	}
	for _, bad := range []string{"", "02:1a:00:00:00", "02:1a:00:00:00:0g", "021a.0000.0001", "02:1a:00:00:00:011"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) accepted", bad)
		}
	}
	for _, m := range CsumModes {
		got, err := ParseCsumMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseCsumMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseCsumMode("neutral"); !errors.Is(err, ErrBadMode) {
		t.Errorf("ParseCsumMode(neutral) = %v", err)
	}
	if _, err := CsumMode(8).MarshalText(); err == nil {
		t.Error("invalid mode marshalled")
	}
}

func TestTypedIdentifiers(t *testing.T) {
	id, err := NewVNIPv4(0x123, netip.MustParseAddr("10.1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if id.Type() != TypeVNIPv4 || id.C() {
		t.Errorf("type %v C %v", id.Type(), id.C())
	}
	if v, ok := id.VNID(); !ok || v != 0x123 {
		t.Errorf("VNID = %v, %v", v, ok)
	}
	if a := id.IPv4(); a != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("IPv4 = %v", a)
	}
	if _, err := NewVNIPv4(MaxVNID+1, netip.MustParseAddr("10.1.2.3")); !errors.Is(err, ErrBadIdentifier) {
		t.Errorf("VNID overflow: %v", err)
	}
	if _, err := NewVNIPv4(1, netip.MustParseAddr("::1")); !errors.Is(err, ErrBadIdentifier) {
		t.Errorf("IPv6 in vn-ipv4: %v", err)
	}
	l, err := NewLUID(42)
	if err != nil || l.Type() != TypeLUID || l.ID() != 42 {
		t.Errorf("NewLUID = %v, %v", l, err)
	}
	if _, err := NewLUID(MaxID + 1); err == nil {
		t.Error("NewLUID overflow accepted")
	}
	u, _ := NewVNIPv6Unicast(7, 0xdeadbeef)
	if v, _ := u.VNID(); u.Type() != TypeVNIPv6Unicast || v != 7 || u.Low32() != 0xdeadbeef || u.IPv4().IsValid() {
		t.Errorf("NewVNIPv6Unicast = %v", u)
	}
	m, _ := NewVNIPv6Multicast(7, 1)
	if m.Type() != TypeVNIPv6Mcast {
		t.Errorf("multicast type %v", m.Type())
	}
	if _, ok := l.VNID(); ok {
		t.Error("LUID has a VNID")
	}
	if id.WithC(true).C() != true || id.WithC(true).WithC(false) != id {
		t.Error("WithC")
	}
	if Type(9).String() != "type-9" || TypeVNIPv4.String() != "vn-ipv4" {
		t.Error("Type.String")
	}
}
