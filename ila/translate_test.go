package ila

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// Public vectors from the kernel's Documentation/networking/ila.rst, as
// ILA.md quotes them.
var vectors = []struct {
	name string
	sir  string
	loc  string
	mode CsumMode
	ila  string
}{
	{"neutral-map", "3333:0:0:1:2000:0:1:87", "2001:0:87:0", CsumNeutralMap, "2001:0:87:0:3000:0:1:333"},
	{"neutral-map-auto", "3333:0:0:1:2000:0:1:87", "2001:0:87:0", CsumNeutralMapAuto, "2001:0:87:0:2000:0:1:1333"},
	{"neutral-map-auto second", "3333:0:0:1:2000:0:2:87", "2001:0:87:1", CsumNeutralMapAuto, "2001:0:87:1:2000:0:2:1332"},
	{"no-action", "3333:0:0:1:2000:0:1:87", "2001:0:87:0", CsumNoAction, "2001:0:87:0:2000:0:1:87"},
	{"adjust-transport", "3333:0:0:1:2000:0:1:87", "2001:0:87:0", CsumAdjustTransport, "2001:0:87:0:2000:0:1:87"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			sir := netip.MustParseAddr(v.sir)
			loc, err := ParseLocator(v.loc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := SIRToILA(sir, loc, v.mode)
			if err != nil {
				t.Fatalf("SIRToILA: %v", err)
			}
			if want := netip.MustParseAddr(v.ila); got != want {
				t.Errorf("SIRToILA = %v, want %v", got, want)
			}
			back, err := ILAToSIR(got, SIRPrefixOf(sir), v.mode)
			if err != nil {
				t.Fatalf("ILAToSIR: %v", err)
			}
			if back.As16() != sir.As16() {
				t.Errorf("ILAToSIR = %v, want %v byte for byte", back, sir)
			}
		})
	}
}

func TestTranslateErrors(t *testing.T) {
	loc := Locator(0x2001_0000_0087_0000)
	tests := []struct {
		name string
		sir  netip.Addr
		mode CsumMode
		want error
	}{
		{"C bit under neutral-map", netip.MustParseAddr("3333:0:0:1:3000:0:1:87"), CsumNeutralMap, ErrCBitSet},
		{"low16 zero neutral-map", netip.MustParseAddr("3333:0:0:1:2000:0:1:0"), CsumNeutralMap, ErrZeroAdjust},
		{"low16 zero neutral-map-auto", netip.MustParseAddr("3333:0:0:1:2000:0:1:0"), CsumNeutralMapAuto, ErrZeroAdjust},
		{"ipv4", netip.MustParseAddr("10.0.0.1"), CsumNeutralMap, ErrInvalidAddr},
		{"ipv4-mapped", netip.MustParseAddr("::ffff:10.0.0.1"), CsumNeutralMap, ErrInvalidAddr},
		{"zero addr", netip.Addr{}, CsumNeutralMap, ErrInvalidAddr},
		{"bad mode", netip.MustParseAddr("3333::1"), CsumMode(9), ErrBadMode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SIRToILA(tc.sir, loc, tc.mode)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			var ae *AddrError
			if err != nil && !errors.As(err, &ae) {
				t.Errorf("err %T is not an *AddrError", err)
			}
		})
	}
	// Low 16 bits 0 is fine when nothing is folded into them.
	for _, m := range []CsumMode{CsumNoAction, CsumAdjustTransport} {
		if _, err := SIRToILA(netip.MustParseAddr("3333:0:0:1:2000:0:1:0"), loc, m); err != nil {
			t.Errorf("%v: %v", m, err)
		}
	}
}

// TestZeroCollides shows why ErrZeroAdjust exists: without the check,
// identifiers ending in 0x0000 and 0xffff map to the same ILA address.
func TestZeroCollides(t *testing.T) {
	p := SIRPrefix(0x3333_0000_0000_0001)
	loc := Locator(0x2001_0000_0087_0000)
	for _, mode := range []CsumMode{CsumNeutralMap, CsumNeutralMapAuto} {
		d := NeutralAdjust(p, loc, mode)
		if Add1(0x0000, d) != Add1(0xffff, d) {
			t.Errorf("%v: 0x0000 and 0xffff do not collide (%#x vs %#x): the refusal rule is wrong", mode, Add1(0, d), Add1(0xffff, d))
		}
	}
}

func randSIR(r *rand.Rand) (SIRPrefix, Identifier) {
	p := SIRPrefix(r.Uint64())
	id := Identifier(r.Uint64())
	return p, id
}

// TestRoundTripProperty: SIR->ILA->SIR is the identity for every valid
// input in every mode.
func TestRoundTripProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, mode := range CsumModes {
		n := 0
		for i := 0; i < 200000; i++ {
			p, id := randSIR(r)
			if i%7 == 0 {
				id = id&^0xffff | Identifier(r.IntN(3)) | Identifier(0xfffe*r.IntN(2))
			}
			loc := Locator(r.Uint64())
			sir := p.Addr(id)
			a, err := SIRToILA(sir, loc, mode)
			if err != nil {
				if CheckIdentifier(id, mode) == nil {
					t.Fatalf("%v: SIRToILA(%v, %v) refused a valid identifier: %v", mode, sir, loc, err)
				}
				continue
			}
			n++
			if LocatorOf(a) != loc {
				t.Fatalf("%v: locator of %v is not %v", mode, a, loc)
			}
			back, err := ILAToSIR(a, p, mode)
			if err != nil || back != sir {
				t.Fatalf("%v: round trip %v -> %v -> %v (%v)", mode, sir, a, back, err)
			}
		}
		if n < 80000 {
			t.Errorf("%v: only %d valid samples", mode, n)
		}
	}
}

// eq1 compares one's-complement sums, where 0x0000 and 0xffff are both zero.
func eq1(a, b uint16) bool {
	if a == 0xffff {
		a = 0
	}
	if b == 0xffff {
		b = 0
	}
	return a == b
}

// TestNeutralInvariant: in the neutral modes the one's-complement sum of the
// address does not change.
func TestNeutralInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, mode := range []CsumMode{CsumNeutralMap, CsumNeutralMapAuto} {
		for i := 0; i < 100000; i++ {
			p, id := randSIR(r)
			loc := Locator(r.Uint64())
			sir := p.Addr(id)
			a, err := SIRToILA(sir, loc, mode)
			if err != nil {
				continue
			}
			if !eq1(AddrSum(sir), AddrSum(a)) {
				t.Fatalf("%v: sum(%v)=%#x != sum(%v)=%#x", mode, sir, AddrSum(sir), a, AddrSum(a))
			}
		}
	}
}

func TestILAToSIRNeutralMapWithoutC(t *testing.T) {
	// An ILA address without the C bit under neutral-map was not adjusted:
	// only the prefix changes (the kernel's behaviour).
	a := netip.MustParseAddr("2001:0:87:0:2000:0:1:87")
	got, err := ILAToSIR(a, SIRPrefix(0x3333_0000_0000_0001), CsumNeutralMap)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("3333:0:0:1:2000:0:1:87"); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDomain(t *testing.T) {
	p, _ := ParseSIRPrefix("3333:0:0:1::/64")
	loc, _ := ParseLocator("2001:0:87:0")
	d := Domain{Name: "default", SIR: p, Csum: CsumNeutralMap}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := d.ToILA(netip.MustParseAddr("3333:0:0:1:2000:0:1:87"), loc)
	if err != nil || got != netip.MustParseAddr("2001:0:87:0:3000:0:1:333") {
		t.Fatalf("ToILA = %v, %v", got, err)
	}
	if back, err := d.ToSIR(got); err != nil || back != netip.MustParseAddr("3333:0:0:1:2000:0:1:87") {
		t.Fatalf("ToSIR = %v, %v", back, err)
	}
	if _, err := d.ToILA(netip.MustParseAddr("3333:0:0:2:2000:0:1:87"), loc); !errors.Is(err, ErrNotInPrefix) {
		t.Errorf("other prefix: err = %v, want ErrNotInPrefix", err)
	}
	// Typed format refuses the C bit in every mode.
	da := Domain{Name: "a", SIR: p, Csum: CsumAdjustTransport}
	if _, err := da.ToILA(netip.MustParseAddr("3333:0:0:1:3000:0:1:87"), loc); !errors.Is(err, ErrCBitSet) {
		t.Errorf("typed adjust-transport with C: err = %v, want ErrCBitSet", err)
	}
	// IID format does not reserve C: allowed except under neutral-map.
	di := Domain{Name: "i", SIR: p, Csum: CsumNeutralMapAuto, Format: FormatIID}
	if _, err := di.ToILA(netip.MustParseAddr("3333:0:0:1:3000:0:1:87"), loc); err != nil {
		t.Errorf("iid neutral-map-auto with top bits set: %v", err)
	}
	bad := []Domain{
		{Name: "", SIR: p},
		{Name: "z", SIR: 0},
		{Name: "m", SIR: p, Csum: 7},
		{Name: "f", SIR: p, Csum: CsumNeutralMap, Format: FormatIID},
		{Name: "g", SIR: p, Format: 9},
	}
	for _, b := range bad {
		if err := b.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", b)
		}
	}
}

func TestMappingValidate(t *testing.T) {
	p := SIRPrefix(0x3333_0000_0000_0001)
	m := Mapping{SIR: p, Identifier: 0x2000_0000_0001_0000, Locator: 1, Csum: CsumNeutralMap}
	if err := m.Validate(); !errors.Is(err, ErrZeroAdjust) {
		t.Errorf("Validate = %v, want ErrZeroAdjust", err)
	}
	m.Identifier = 0x2000_0000_0001_0087
	if err := m.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	// By hand: S = 0x3334, L = 0x0001, ~L = 0xfffe, o = 0x0087:
	// 0x0087 +' 0x3334 +' 0xfffe +' 0xefff = 0x23ba, and C set.
	a, err := m.ILAAddr()
	if want := netip.MustParseAddr("0:0:0:1:3000:0:1:23ba"); err != nil || a != want {
		t.Errorf("ILAAddr = %v, %v; want %v", a, err, want)
	}
}

func TestLocatorTable(t *testing.T) {
	var lt LocatorTable
	if err := lt.Claim(1, 10); err != nil {
		t.Fatal(err)
	}
	if err := lt.Claim(1, 10); err != nil {
		t.Errorf("same claim twice: %v", err)
	}
	if err := lt.Claim(1, 11); !errors.Is(err, ErrLocatorConflict) {
		t.Errorf("second prefix: err = %v, want ErrLocatorConflict", err)
	}
	if p, ok := lt.Lookup(1); !ok || p != 10 {
		t.Errorf("Lookup = %v, %v", p, ok)
	}
	lt.Release(1)
	if err := lt.Claim(1, 11); err != nil {
		t.Errorf("after release: %v", err)
	}
}
